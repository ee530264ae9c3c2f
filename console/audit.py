"""The audit pages for office admins: a case's trail and a person's recent actions; reads audited too.

Admins see the trails of the cases and people of the offices they administer (the central office's
admins: all). The pages show who, when and what, never a phone number or a reporter's words. Every
read a trail records (a case viewed, a recording played) is written here, in a short transaction of its
own: a page (GET) otherwise only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, abort, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from cases import audit
from cases.models import Case, Office, SummaryVersion, TranscriptCorrection
from cases.reference import is_valid_reference
from cases.staff import Role, User
from console import queries
from console.base import READ_METHODS, clock, database, db, me, refuse, require_login, who
from console.i18n import EVENT_WORDS, N_, words

bp = Blueprint("audit", __name__, url_prefix="/console/audit")
bp.before_request(require_login)

# What an audit row's action means, in words (case events use console.i18n.EVENT_WORDS).
AUDIT_WORDS: dict[str, str] = {
    "case_viewed": N_("Opened the case"),
    "recording_played": N_("Played the recording"),
    "reveal_number": N_("Saw the reporter's number"),
    "reveal_number_refused": N_("Was refused the reporter's number"),
    "access_refused": N_("Was refused a page"),
    "audit_trail_viewed": N_("Read the audit trail"),
    "login_locked": N_("Account locked after failed sign-ins"),
    "role_granted": N_("Role granted"),
    "role_revoked": N_("Role removed"),
    "committee_created": N_("Committee created"),
    "committee_removed": N_("Committee removed"),
    "committee_member_added": N_("Committee member added"),
    "committee_member_removed": N_("Committee member removed"),
    "append_only_unlocked": N_("Audit rows opened for retention"),
}
# Why a reveal was refused (detail "why"), and what a refused page was (detail "what").
DETAIL_WORDS: dict[str, str] = {
    "no_right": N_("not the case's staff"),
    "no_reason": N_("no reason given"),
    "anonymous": N_("the reporter left no number"),
    "case": N_("a case"),
    "recording": N_("a recording"),
    "transcript": N_("a transcript"),
    "proposal": N_("a forwarding proposal"),
    "audit_case": N_("a case's audit trail"),
    "audit_user": N_("a person's audit trail"),
}


@dataclass
class CaseHistory:
    """The case page's versions: every summary, every correction by recording, newest first."""

    summaries: list[SummaryVersion]
    corrections: dict[int, list[TranscriptCorrection]]

    def earlier_corrections(self, recording_id: int) -> list[TranscriptCorrection]:
        return self.corrections.get(recording_id, [])[1:]

    def names_into(self, names: dict[int, str], session: Session) -> None:
        """Add the names of the versions' authors to the case page's names."""
        ids = {v.user_id for v in self.summaries if v.user_id}
        ids |= {c.user_id for rows in self.corrections.values() for c in rows}
        ids -= names.keys()
        if ids:
            names.update(session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).tuples())


def note_read(action: str, case_id: int | None, detail: dict[str, Any] | None = None) -> None:
    """Write the audit row of a read: on GET in a short write transaction of its own, after the checks."""
    user_id = me().id
    if request.method in READ_METHODS:
        with database().writing() as session:
            audit.record(session, user_id, action, case_id=case_id, detail=detail, clock=clock)
    else:
        audit.record(db(), user_id, action, case_id=case_id, detail=detail, clock=clock)


def _names(rows: list[audit.TrailRow]) -> dict[int, User]:
    ids = {r.user_id for r in rows if r.user_id}
    return {u.id: u for u in db().scalars(select(User).where(User.id.in_(ids)))} if ids else {}


def _offices(rows: list[audit.TrailRow]) -> dict[str, Office]:
    codes = {str(r.detail["office"]) for r in rows if "office" in r.detail}
    return {o.code: o for o in db().scalars(select(Office).where(Office.code.in_(codes)))} if codes else {}


def _may_audit_somewhere() -> bool:
    return audit.administered_office_ids(db(), me()) != set()


@bp.get("")
def index() -> Any:
    """Look up a case by its reference, or a person by user name."""
    if not _may_audit_somewhere():
        abort(403)
    reference = request.args.get("reference", "").replace("-", "").strip()[:16]
    username = request.args.get("username", "").strip()[:80]
    missing = False
    if reference:
        found = db().scalar(select(Case.id).where(Case.reference == reference))
        if found is not None and is_valid_reference(reference):
            return redirect(url_for("audit.case_trail", case_id=found))
        missing = True
    elif username:
        person = queries.user_by_username(db(), username)
        if person is not None:
            return redirect(url_for("audit.user_trail", user_id=person.id))
        missing = True
    return render_template("console/audit_index.html", nav="audit", missing=missing)


@bp.get("/cases/<int:case_id>")
def case_trail(case_id: int) -> str:
    case = db().get(Case, case_id)
    if case is None or not audit.may_audit_case(db(), me(), case):
        refuse("audit_case", case_id)
    rows = audit.case_trail(db(), case)
    note_read("audit_trail_viewed", case.id, {"of": "case"})
    return render_template(
        "console/audit_trail.html",
        nav="audit",
        case=case,
        person=None,
        rows=rows,
        users=_names(rows),
        offices=_offices(rows),
    )


@bp.get("/users/<int:user_id>")
def user_trail(user_id: int) -> str:
    person = db().get(User, user_id)
    if person is None or not audit.may_audit_user(db(), me(), person):
        refuse("audit_user", user_id)
    rows = audit.user_trail(db(), me(), person)
    note_read("audit_trail_viewed", None, {"of": "user", "id": person.id})
    cases = {c.id: c for c in db().scalars(select(Case).where(Case.id.in_({r.case_id for r in rows})))}
    return render_template(
        "console/audit_trail.html",
        nav="audit",
        case=None,
        person=person,
        rows=rows,
        users=_names(rows),
        offices=_offices(rows),
        cases=cases,
    )


def _action_words(row: audit.TrailRow) -> str:
    return words(AUDIT_WORDS if row.audit else EVENT_WORDS, row.action)


def _detail_words(value: Any) -> str:
    return words(DETAIL_WORDS, value)


def may_audit(case: Case) -> bool:
    """Whether the case page links to the case's trail (the template asks)."""
    return audit.may_audit_case(db(), me(), case)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.jinja_env.filters["audit_action_words"] = _action_words
    app.jinja_env.filters["audit_detail_words"] = _detail_words
    app.jinja_env.globals["may_audit"] = may_audit
    # The header's link: any admin role (read once per request with the rest of the nav).
    app.jinja_env.globals["sees_audit"] = lambda: current_user.is_authenticated and who().has(Role.ADMIN)
