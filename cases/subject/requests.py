"""Erasure from the console: one office admin asks, with a reason; a second admin approves or rejects.

As role requests (cases.office_staff), the two-person rule: the admin who asked never approves their
own request; the request row is kept when decided. Only on approval is the case erased (cases.subject.erase),
in the same transaction as the decision. Admins of the case's office or of an office above it decide.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases import audit
from cases.models import Case, ErasureRequest
from cases.staff import User
from cases.subject.erase import CaseHeld, Erased, SubjectError, erase_case, require_reason
from cases.texts import N_
from cases.workflow import NotPermitted


def may_erase(session: Session, user: User, case: Case) -> bool:
    """Admins of the case's office or of an office above it (the central admins: every case)."""
    scope = audit.administered_office_ids(session, user)
    return user.active and (scope is None or case.office_id in scope)


def _require_admin(session: Session, user: User, case: Case) -> None:
    if not may_erase(session, user, case):
        raise NotPermitted(N_("Only an admin of the case's office, or of an office above it, can do this."))


def pending_request(session: Session, case: Case) -> ErasureRequest | None:
    return session.scalar(
        select(ErasureRequest).where(ErasureRequest.case_id == case.id, ErasureRequest.status == "pending")
    )


def request_erasure(
    session: Session, case: Case, actor: User, reason: str, *, now: datetime
) -> ErasureRequest:
    """Ask for the case's erasure: nothing is erased until another admin approves."""
    _require_admin(session, actor, case)
    reason = require_reason(reason)
    if case.legal_hold_at is not None:
        raise CaseHeld()
    if pending_request(session, case) is not None:
        raise SubjectError(N_("An erasure of this case is already waiting for a second admin."))
    row = ErasureRequest(case_id=case.id, reason=reason, requested_by=actor.id, requested_at=now)
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor.id,
        "erasure_requested",
        case_id=case.id,
        detail={"request": row.id},
        reason=reason,
        clock=lambda: now,
    )
    return row


def _pending(session: Session, row: ErasureRequest) -> Case:
    if row.status != "pending":
        raise SubjectError(N_("This request has already been decided."))
    return session.get_one(Case, row.case_id)


def approve_erasure(session: Session, row: ErasureRequest, actor: User, *, now: datetime) -> Erased:
    """A second admin approves: the case is erased now (step one; the caller finishes the files)."""
    case = _pending(session, row)
    _require_admin(session, actor, case)
    if actor.id == row.requested_by:
        raise NotPermitted(N_("You asked for this erasure: another admin has to approve it."))
    row.status, row.decided_by, row.decided_at = "approved", actor.id, now
    return erase_case(session, case, actor_id=actor.id, reason=row.reason, now=now, request_id=row.id)


def reject_erasure(session: Session, row: ErasureRequest, actor: User, *, now: datetime) -> None:
    """Any admin of the case rejects it (the one who asked withdraws it); nothing is erased."""
    case = _pending(session, row)
    _require_admin(session, actor, case)
    row.status, row.decided_by, row.decided_at = "rejected", actor.id, now
    audit.record(
        session, actor.id, "erasure_rejected", case_id=case.id, detail={"request": row.id}, clock=lambda: now
    )
