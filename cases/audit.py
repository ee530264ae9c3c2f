"""The audit trail: who saw or did what to a case, who may read that, and the one way past append-only.

Audit rows (cases.staff.AuditEvent) say who, when and what, never a phone number or a reporter's words;
the case's own history (CaseEvent) and the versions of its summary and transcript are kept beside them.
All of those tables are append-only: database triggers (migration 0008) refuse UPDATE and DELETE unless
the transaction went through `unlocked`, which is itself audited.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from cases.models import Case, CaseEvent, Office, SummaryVersion, TranscriptCorrection
from cases.notifications.inbox import overseen_office_ids
from cases.staff import AppendOnlyUnlock, AuditEvent, Role, RoleAssignment, User
from infra.clock import Clock, utcnow

# Never a key of an audit row's detail: what a refused or granted read would otherwise copy in.
PERSONAL_KEYS = frozenset({"number", "phone", "text", "transcript", "summary", "outcome"})
# What the trail pages show of a detail: ids, codes and choices, never free text.
SHOWN_KEYS = ("why", "what", "id", "recording", "version", "office", "role", "user", "committee", "of")
RECENT = 200  # the rows a user's trail shows, newest first


def record(
    session: Session,
    user_id: int | None,
    action: str,
    *,
    case_id: int | None = None,
    detail: dict[str, Any] | None = None,
    reason: str | None = None,
    clock: Clock = utcnow,
) -> AuditEvent:
    """Add one audit row (flushed, not committed)."""
    detail = dict(detail or {})
    assert not PERSONAL_KEYS & detail.keys(), "no personal data in an audit row"
    row = AuditEvent(
        at=clock(), user_id=user_id, action=action, case_id=case_id, detail=detail, reason=reason
    )
    session.add(row)
    session.flush()
    return row


@contextmanager
def unlocked(session: Session, purpose: str, actor_id: int | None, clock: Clock = utcnow) -> Iterator[None]:
    """Let this transaction UPDATE or DELETE append-only rows (retention, erasure): audited, then closed.

    The unlock row must be gone by COMMIT (a deferred foreign key to a row that never exists), so a
    path that forgets to close it fails instead of leaving every later transaction unlocked.
    """
    record(session, actor_id, "append_only_unlocked", detail={"why": purpose[:80]}, clock=clock)
    opened = AppendOnlyUnlock(purpose=purpose[:80], opened_at=clock(), must_close=0)
    session.add(opened)
    session.flush()
    yield
    session.flush()
    # Closed on success only: after an error the transaction rolls back, and the row with it.
    session.execute(delete(AppendOnlyUnlock).where(AppendOnlyUnlock.id == opened.id))
    session.expunge(opened)


# ---- who may read the trail ------------------------------------------------------------------------------


def administered_office_ids(session: Session, user: User) -> set[int] | None:
    """The offices the user administers (their admin offices and those under them); None: all of them."""
    return overseen_office_ids(session, user, (Role.ADMIN,))


def may_audit_case(session: Session, user: User, case: Case) -> bool:
    """Admins of the case's office (or the office that forwarded it), or of an office above it."""
    scope = administered_office_ids(session, user)
    return scope is None or bool({case.office_id, case.forwarded_from_office_id} & scope)


def may_audit_user(session: Session, viewer: User, person: User) -> bool:
    """Admins of an office where the person holds a role (the central admins: anyone)."""
    scope = administered_office_ids(session, viewer)
    if scope is None:
        return True
    held = session.scalars(select(RoleAssignment.office_id).where(RoleAssignment.user_id == person.id))
    return bool(scope & set(held))


# ---- the trail -------------------------------------------------------------------------------------------


@dataclass
class TrailRow:
    """One line of a trail: an audit row or a case event, with only what may be shown of its detail."""

    at: datetime
    user_id: int | None
    action: str
    case_id: int | None
    audit: bool
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    from_status: str | None = None
    to_status: str | None = None


def _shown(detail: dict[str, Any] | None) -> dict[str, Any]:
    detail = detail if isinstance(detail, dict) else {}
    return {k: detail[k] for k in SHOWN_KEYS if k in detail and isinstance(detail[k], str | int)}


def _from_audit(row: AuditEvent) -> TrailRow:
    # A reveal's reason is the staff member's own justification: the reason an admin reads the trail.
    reason = row.reason if row.action.startswith("reveal_number") else None
    return TrailRow(row.at, row.user_id, row.action, row.case_id, True, _shown(row.detail), reason)


def _from_event(row: CaseEvent) -> TrailRow:
    return TrailRow(
        row.at,
        row.actor_id,
        row.action,
        row.case_id,
        False,
        _shown(row.detail),
        from_status=row.from_status,
        to_status=row.to_status,
    )


def case_trail(session: Session, case: Case) -> list[TrailRow]:
    """Everything about one case, oldest first: its events; who viewed, played, revealed, was refused."""
    audits = session.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id))
    events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id))
    rows = [_from_audit(a) for a in audits] + [_from_event(e) for e in events]
    return sorted(rows, key=lambda r: r.at)


def user_trail(session: Session, viewer: User, person: User, limit: int = RECENT) -> list[TrailRow]:
    """The person's recent actions, newest first, limited to the cases and offices the viewer administers."""
    scope = administered_office_ids(session, viewer)
    audits = select(AuditEvent).where(AuditEvent.user_id == person.id)
    events = select(CaseEvent).where(CaseEvent.actor_id == person.id)
    if scope is not None:
        in_scope = select(Case.id).where(
            or_(Case.office_id.in_(scope), Case.forwarded_from_office_id.in_(scope))
        )
        audits = audits.where(or_(AuditEvent.case_id.is_(None), AuditEvent.case_id.in_(in_scope)))
        events = events.where(CaseEvent.case_id.in_(in_scope))
    rows = [_from_audit(a) for a in session.scalars(audits.order_by(AuditEvent.id.desc()).limit(limit))]
    rows += [_from_event(e) for e in session.scalars(events.order_by(CaseEvent.id.desc()).limit(limit))]
    if scope is not None:
        codes = set(session.scalars(select(Office.code).where(Office.id.in_(scope))))
        # A staff change at an office the viewer does not administer stays out of their view.
        rows = [r for r in rows if r.case_id is not None or str(r.detail.get("office", "")) in codes | {""}]
    return sorted(rows, key=lambda r: r.at, reverse=True)[:limit]


# ---- versions ----------------------------------------------------------------------------------------------


def summary_versions(session: Session, case: Case) -> list[SummaryVersion]:
    """Every summary saved for the case, newest first."""
    stmt = select(SummaryVersion).where(SummaryVersion.case_id == case.id)
    return list(session.scalars(stmt.order_by(SummaryVersion.id.desc())))


def correction_versions(session: Session, case: Case) -> dict[int, list[TranscriptCorrection]]:
    """Every transcript correction of the case by recording, newest first."""
    out: dict[int, list[TranscriptCorrection]] = {}
    stmt = select(TranscriptCorrection).where(TranscriptCorrection.case_id == case.id)
    for row in session.scalars(stmt.order_by(TranscriptCorrection.id.desc())):
        out.setdefault(row.recording_id, []).append(row)
    return out
