"""The audit pages for office admins: a case's trail and a person's recent actions; reads audited too.

Admins see the trails of the cases and people of the offices they administer (the central office's
admins: all). The pages show who, when and what, never a phone number or a reporter's words. Every
read a trail records (a case viewed, a recording played) is written here, in a short transaction of its
own: a page (GET) otherwise only reads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from cases import audit
from cases.models import Case, Office, SummaryVersion, TranscriptCorrection
from cases.reference import is_valid_reference
from cases.staff import Role, User
from console import queries
from console.base import READ_METHODS, clock, db, me, refuse, require_login, who
from console.i18n import EVENT_WORDS, N_, words
from infra import db as infra_db
from infra import deadline
from infra.db import Database
from infra.extensions import Shared

log = logging.getLogger(__name__)
READ_AUDIT_WAIT_S = 1.0  # how long a page waits for the write lock before its audit row is queued

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
    "append_only_unlocked": N_("Protected records opened to erase personal data"),
    "role_requested": N_("Role asked for, waiting for a second admin"),
    "role_request_declined": N_("Role request declined"),
    "staff_change_refused": N_("Was refused a staff change"),
    "phone_code_requested": N_("Phone code sent"),
    "phone_code_wrong": N_("Wrong phone code keyed"),
    "phone_code_expired": N_("Phone code expired"),
    "phone_code_not_sent": N_("Phone code could not be sent"),
    "phone_code_refused": N_("Phone code refused"),
    "phone_refused": N_("Phone number refused"),
    "phone_verified": N_("Phone verified"),
    "phone_removed": N_("Phone removed"),
    "phone_set_by_admin": N_("Phone set from the shell, without a code"),
    "legal_hold_set": N_("Set a legal hold"),
    "legal_hold_released": N_("Released a legal hold"),
    "erasure_requested": N_("Asked for an erasure, waiting for a second admin"),
    "erasure_rejected": N_("Rejected an erasure request"),
    "subject_erased": N_("Erased the reporter's data on request"),
    "subject_exported": N_("Exported what the service holds about the case"),
    "retention_erased": N_("Erased by retention"),  # a recording no case held (cases.retention)
    "search_by_number": N_("Searched cases by a phone number's digits"),
    "dashboard_exported": N_("Exported the dashboard's figures or case list"),
    "case_printed": N_("Opened the case's print view"),
    # cases.workflow_changes: second thoughts on the workflow, with the reason beside them.
    "proposal_withdrawn": N_("Withdrew a forwarding proposal"),
    "case_reassigned": N_("Reassigned the case to other SC-Action staff"),
    "case_reopened": N_("Reopened the resolved case"),
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
    # What a dashboard export held (detail "what"); "of" is its file type.
    "figures": N_("the figures"),
    "cases": N_("the case list"),
    # What a retention tombstone says went ("recording" is above): console.i18n.RETENTION_WORDS.
    "caller_number": N_("the reporter's number"),
    "call_events": N_("the caller's path through the menu"),
    "draft": N_("the draft's number, recordings, transcripts and menu path"),
    "callback": N_("the open call back"),
    "corrections": N_("staff corrections of the transcripts"),
    "free_text": N_("free text that may repeat the reporter's words"),
    "erasure": N_("an erasure request"),
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


class ReadAudits:
    """Writes the audit rows of reads without making a page wait for the write lock.

    A row is written at once when the lock comes within READ_AUDIT_WAIT_S (every time, unless another
    program holds the writers out); otherwise a thread of this process writes it as soon as the lock
    is free, so pages still answer beside a held writer (tests/integration/test_console_readers.py).
    A row waiting there is lost only if the process dies before the lock comes (its queuing is logged).
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def write(self, row: dict[str, Any]) -> None:
        try:
            with deadline.deadline(READ_AUDIT_WAIT_S), self._database.writing() as session:
                audit.record(session, **row)
        except (deadline.DeadlineExceeded, OperationalError):
            log.warning("audit row of a read queued: the database's writers are held out")
            self._queue.put(row)
            self._start()

    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def drain(self, timeout: float) -> bool:
        """Wait (tests) until every queued row is written; False if some are still waiting."""
        ends = time.monotonic() + timeout
        while self.pending() and time.monotonic() < ends:
            time.sleep(0.02)
        return not self.pending()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="read-audits", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                row = self._queue.get(timeout=5.0)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            self._write_until_done(row)
            self._queue.task_done()

    def _write_until_done(self, row: dict[str, Any]) -> None:
        while True:
            try:
                with self._database.writing() as session:
                    audit.record(session, **row)
                return
            except (deadline.DeadlineExceeded, OperationalError):
                time.sleep(0.2)  # still held out: try again
            except Exception:
                log.exception("an audit row of a read could not be written (action %s)", row.get("action"))
                return


read_audits: Shared[ReadAudits] = Shared("hotline.read_audits")


def note_read(action: str, case_id: int | None, detail: dict[str, Any] | None = None) -> None:
    """Write the audit row of a read, after its checks: in the POST's transaction, or (GET) on its own."""
    at = clock()
    row: dict[str, Any] = {
        "user_id": me().id,
        "action": action,
        "case_id": case_id,
        "detail": detail,
        "clock": lambda: at,
    }
    if request.method in READ_METHODS:
        read_audits(current_app).write(row)
    else:
        audit.record(db(), **row)


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
    # Outside the admin's offices reads the same as not found: the form does not tell what exists.
    if reference:
        case = (
            db().scalar(select(Case).where(Case.reference == reference))
            if is_valid_reference(reference)
            else None
        )
        if case is not None and audit.may_audit_case(db(), me(), case):
            return redirect(url_for("audit.case_trail", case_id=case.id))
        missing = True
    elif username:
        person = queries.user_by_username(db(), username)
        if person is not None and audit.may_audit_user(db(), me(), person):
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
    read_audits.install(app, ReadAudits(infra_db.database(app)))
    app.register_blueprint(bp)
    app.jinja_env.filters["audit_action_words"] = _action_words
    app.jinja_env.filters["audit_detail_words"] = _detail_words
    app.jinja_env.globals["may_audit"] = may_audit
    # The header's link: any admin role (read once per request with the rest of the nav).
    app.jinja_env.globals["sees_audit"] = lambda: current_user.is_authenticated and who().has(Role.ADMIN)
