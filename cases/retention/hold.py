"""Legal hold: a head SC-Operator keeps a case whole (retention skips it), with a reason, audited."""

from __future__ import annotations

from sqlalchemy.orm import Session

from cases import audit
from cases.access import roles_in
from cases.models import Case, CaseEvent
from cases.staff import Role, User
from cases.texts import N_
from cases.workflow import InvalidInput, NotPermitted
from infra.clock import Clock, utcnow

REASON_LIMIT = 500


class LegalHoldError(InvalidInput):
    """A hold that cannot be set or released as asked (already held, no reason, not held)."""


def may_hold(session: Session, user: User, case: Case) -> bool:
    """Heads SC-Operator of the case's office set and release its hold."""
    return user.active and Role.HEAD in roles_in(session, user, case.office_id)


def _require_head(session: Session, user: User, case: Case) -> None:
    if not may_hold(session, user, case):
        raise NotPermitted(
            N_("Only a head SC-Operator of the case's office can set or release a legal hold.")
        )


def set_hold(session: Session, case: Case, actor: User, reason: str, *, clock: Clock = utcnow) -> None:
    """Put the case under legal hold: nothing of it is erased by retention until a head releases it."""
    _require_head(session, actor, case)
    reason = reason.strip()
    if not reason:
        raise LegalHoldError(N_("Give the reason for the legal hold."))
    if case.legal_hold_at is not None:
        raise LegalHoldError(N_("The case is already under legal hold."))
    now = clock()
    case.legal_hold_at, case.legal_hold_by, case.legal_hold_reason = now, actor.id, reason[:REASON_LIMIT]
    session.add(CaseEvent(case_id=case.id, at=now, actor_id=actor.id, action="legal_hold_set", detail={}))
    audit.record(
        session, actor.id, "legal_hold_set", case_id=case.id, reason=reason[:REASON_LIMIT], clock=clock
    )


def release_hold(session: Session, case: Case, actor: User, reason: str, *, clock: Clock = utcnow) -> None:
    """End the legal hold: retention applies to the case again (what is past its period goes next night)."""
    _require_head(session, actor, case)
    reason = reason.strip()
    if not reason:
        raise LegalHoldError(N_("Give the reason for releasing the legal hold."))
    if case.legal_hold_at is None:
        raise LegalHoldError(N_("The case is not under legal hold."))
    now = clock()
    case.legal_hold_at = case.legal_hold_by = case.legal_hold_reason = None
    session.add(
        CaseEvent(case_id=case.id, at=now, actor_id=actor.id, action="legal_hold_released", detail={})
    )
    audit.record(
        session, actor.id, "legal_hold_released", case_id=case.id, reason=reason[:REASON_LIMIT], clock=clock
    )
