"""The console's forms for second thoughts: withdraw a proposal, reassign or reopen a case (with a reason).

Each view calls one cases.workflow_changes function in the request's write transaction (console.base.apply);
a refusal becomes a message in the reader's language. A case the user may not see answers 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from cases import workflow_changes as changes
from cases.models import Case, ForwardingProposal
from cases.staff import Committee, User
from console import queries
from console.base import apply, case_or_404, clock, db, me, refuse, require_login
from console.i18n import _

bp = Blueprint("changes", __name__, url_prefix="/console")
bp.before_request(require_login)

REASON_LIMIT = 2000


@dataclass
class Controls:
    """Which of these forms the case page shows to this user, and what the reassign form offers."""

    me_id: int
    can_reassign: bool = False
    can_reopen: bool = False
    people: list[User] = field(default_factory=list)
    committees: list[Committee] = field(default_factory=list)


def controls(session: Session, user: User, case: Case) -> Controls:
    out = Controls(
        me_id=user.id,
        can_reassign=changes.may_reassign(session, user, case),
        can_reopen=changes.may_reopen(session, user, case),
    )
    if out.can_reassign:
        out.people = queries.action_staff(session, case.office_id)
        out.committees = list(
            session.scalars(
                select(Committee).where(Committee.office_id == case.office_id).order_by(Committee.name)
            )
        )
    return out


def my_pending(session: Session, user: User) -> list[queries.ProposalRow]:
    """The user's own proposals waiting for another head (the approvals page lists them under its own)."""
    return queries.proposal_rows(session, changes.my_pending_proposals(session, user))


def _page(case_id: int, anchor: str) -> str:
    return url_for("console.case", case_id=case_id, _anchor=anchor)


def _reason() -> str:
    return request.form.get("reason", "")[:REASON_LIMIT]


@bp.post("/proposals/<int:proposal_id>/withdraw")
def withdraw(proposal_id: int) -> Response:
    proposal = db().get(ForwardingProposal, proposal_id)
    found = queries.visible_case(db(), me(), proposal.case_id) if proposal is not None else None
    if proposal is None or found is None:
        refuse("proposal", proposal_id)
    return apply(
        _page(found.id, "forwarding"),
        lambda: changes.withdraw_proposal(db(), proposal, me(), clock=clock),
        _("The proposal was withdrawn. The case is back at its office."),
    )


@bp.post("/cases/<int:case_id>/reassign")
def reassign(case_id: int) -> Response:
    found = case_or_404(case_id)
    kind, _sep, ident = request.form.get("target", "")[:40].partition(":")
    to_user = db().get(User, int(ident)) if kind == "user" and ident.isdigit() else None
    to_committee = db().get(Committee, int(ident)) if kind == "committee" and ident.isdigit() else None
    reason = _reason()
    return apply(
        _page(case_id, "assignment"),
        lambda: changes.reassign(
            db(), found, me(), reason, to_user=to_user, to_committee=to_committee, clock=clock
        ),
        _("The case was reassigned. The new SC-Action staff were told."),
    )


@bp.post("/cases/<int:case_id>/reopen")
def reopen(case_id: int) -> Response:
    found = case_or_404(case_id)
    reason = _reason()
    return apply(
        _page(case_id, "actions"),
        lambda: changes.reopen(db(), found, me(), reason, clock=clock),
        _("The case was reopened. Its SC-Action staff work on it again."),
    )
