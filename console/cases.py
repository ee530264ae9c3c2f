"""The staff console's case pages: the queue, a case and its forms, recordings, approvals, assignments.

Each view parses the request, calls one cases.workflow service function, commits, and maps a
WorkflowError to a flash message in the reader's language. Whatever the user may not see answers 404
and leaves an audit row. Pages (GET) read through the read-only session; a form (POST) works in one
write transaction (see console.base.db).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import phonenumbers
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response

from cases import audit as case_audit
from cases import callbacks, coverage, workflow
from cases.callbacks.promise import CallbackStillOpen
from cases.models import ForwardingProposal, HazardGroup, Office, OfficeKind
from cases.retention import hold as retention_hold
from cases.staff import Committee, User
from cases.workflow import WorkflowError
from console import case_changes, i18n, playback, queries, queue_order
from console.audit import CaseHistory, note_read
from console.base import (
    apply,
    case_or_404,
    cipher,
    clock,
    db,
    end_writes,
    me,
    refuse,
    require_login,
    who,
)
from console.i18n import _, error_text
from infra.config import Config
from transcription.models import Recording, Transcript

log = logging.getLogger(__name__)
bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)
bp.before_request(require_login)

TEXT_LIMIT = 20_000  # a summary, correction or action note: generous, but bounded


def _text(name: str, limit: int = TEXT_LIMIT) -> str:
    return request.form.get(name, "")[:limit]


def _hazard(value: str | None) -> HazardGroup | None:
    try:
        return HazardGroup(value) if value else None
    except ValueError:
        return None


def _case_page(case_id: int, anchor: str) -> str:
    return url_for("console.case", case_id=case_id, _anchor=anchor)


# ---- pages ----------------------------------------------------------------------------------------------


@bp.get("/")
def queue() -> str:
    f = queries.QueueFilter.from_args(request.args)
    now = clock()
    page = queries.queue(db(), me(), f, now=now)
    return render_template(
        "console/queue.html",
        nav="queue",
        page=page,
        offices=queries.queue_offices(db(), who()),
        hazards=list(HazardGroup),
        states=queries.STATE_FILTERS,
        now=now,
        # "Due soon" is the callbacks file's remind_before: the row stands out when the reminder goes.
        soon=timedelta(minutes=callbacks.callback_settings(current_app).remind_before_minutes),
        preview=queue_order.preview,
    )


@bp.get("/cases/<int:case_id>")
def case(case_id: int) -> str:
    found = case_or_404(case_id)
    view = queries.case_view(db(), me(), found, who())
    history = CaseHistory(
        summaries=case_audit.summary_versions(db(), found),
        corrections=case_audit.correction_versions(db(), found),
    )
    history.names_into(view.names, db())
    note_read("case_viewed", found.id)
    return render_template(
        "console/case.html",
        nav="queue",
        v=view,
        history=history,
        hazards=list(HazardGroup),
        now=clock(),
        offered=_offered_office(),
        changes=case_changes.controls(db(), me(), found),
    )


def _offered_office() -> Office | None:
    """The office a refused routing offered instead (?offer=id), shown as a one-click routing."""
    value = request.args.get("offer", "")
    office = db().get(Office, int(value)) if value.isdigit() and len(value) < 9 else None
    return office if office is not None and office.kind != OfficeKind.CENTRAL else None


@bp.get("/approvals")
def approvals() -> str:
    return render_template(
        "console/approvals.html",
        nav="approvals",
        rows=queries.approvals(db(), me()),
        mine=case_changes.my_pending(db(), me()),
    )


@bp.get("/assignments")
def assignments() -> str:
    return render_template(
        "console/assignments.html", nav="assignments", rows=queries.my_assignments(db(), me()), now=clock()
    )


@bp.get("/recordings/<int:recording_id>/audio")
def recording_audio(recording_id: int) -> Response:
    """The recording, streamed with HTTP Range (206) so the player can seek; same access as its case."""
    rec = db().get(Recording, recording_id)
    found = queries.visible_case(db(), me(), rec.case_id) if rec is not None and rec.case_id else None
    if rec is None or found is None:
        refuse("recording", recording_id)
    cfg: Config = current_app.config["HOTLINE"]
    if not rec.stored_path:
        abort(404)
    path = Path(rec.stored_path).resolve()
    if not path.is_relative_to(cfg.recordings_dir.resolve()) or not path.is_file():
        abort(404)
    if _starts_playing(request.headers.get("Range")):
        note_read("recording_played", found.id, {"recording": rec.id})
    # Sealed at rest (infra.sealed): opened in memory, only the chunks the range needs.
    return playback.sealed_audio(path, rec.sha256)


def _starts_playing(range_header: str | None) -> bool:
    """A play is audited once: the player's first request (whole file, or from byte 0), not each seek."""
    if not range_header:
        return True
    return range_header.replace(" ", "").lower().startswith("bytes=0-")


@bp.get("/transcripts/<int:transcript_id>")
def transcript(transcript_id: int) -> Response:
    """A transcript is shown on its case's page: go there, if the user may see the case."""
    row = db().get(Transcript, transcript_id)
    rec = db().get(Recording, row.recording_id) if row is not None else None
    found = queries.visible_case(db(), me(), rec.case_id) if rec is not None and rec.case_id else None
    if rec is None or found is None:
        refuse("transcript", transcript_id)
    return redirect(url_for("console.case", case_id=found.id, _anchor=f"recording-{rec.id}"))


# ---- call-centre agents ---------------------------------------------------------------------------------


@bp.post("/cases/<int:case_id>/route")
def route(case_id: int) -> Response:
    found = case_or_404(case_id)
    office = queries.route_target(db(), _text("province", 8), _text("district", 8))
    if office is None:
        flash(_("Choose a province, and if you give a district, one of that province."), "error")
        return redirect(url_for("console.case", case_id=case_id, _anchor="routing"))
    category = _hazard(request.form.get("category"))
    policy = current_app.config["HOTLINE"].route_without_operator
    try:
        sent = workflow.route_case(
            db(), found, me(), office, category=category, without_operator=policy, clock=clock
        )
        db().commit()
    except coverage.NoOperatorThere as exc:
        db().rollback()
        flash(error_text(exc), "error")
        # The case page offers the office above as a one-click routing (?offer=…).
        offer = exc.offered.id if exc.offered is not None else None
        return redirect(url_for("console.case", case_id=case_id, offer=offer, _anchor="routing"))
    except WorkflowError as exc:
        db().rollback()
        flash(error_text(exc), "error")
        return redirect(_case_page(case_id, "routing"))
    if sent.id != office.id:
        flash(
            _(
                "%(office)s has no SC-Operator: the case was sent to %(offered)s instead.",
                office=i18n.office_name(office),
                offered=i18n.office_name(sent),
            ),
            "warning",
        )
    else:
        flash(_("The case was sent to %(office)s.", office=i18n.office_name(office)), "ok")
    return redirect(_case_page(case_id, "routing"))


@bp.post("/cases/<int:case_id>/recordings/<int:recording_id>/correction")
def correct(case_id: int, recording_id: int) -> Response:
    found = case_or_404(case_id)
    rec = db().get(Recording, recording_id)
    if rec is None or rec.case_id != found.id:
        refuse("recording", recording_id)
    text = _text("text")
    return apply(
        _case_page(case_id, f"recording-{recording_id}"),
        lambda: workflow.correct_transcript(db(), found, me(), rec, text, clock=clock),
        _("The corrected transcript was saved; the machine transcript is kept beside it."),
    )


# ---- SC-Operators and heads --------------------------------------------------------------------------------


@bp.post("/cases/<int:case_id>/summary")
def summarise(case_id: int) -> Response:
    found = case_or_404(case_id)
    category = _hazard(request.form.get("category"))
    if category is None:
        flash(_("Choose the hazard group."), "error")
        return redirect(url_for("console.case", case_id=case_id, _anchor="summary"))
    summary = _text("summary")
    return apply(
        _case_page(case_id, "summary"),
        lambda: workflow.summarise(db(), found, me(), summary, category, clock=clock),
        _("The summary was saved."),
    )


@bp.post("/cases/<int:case_id>/proposals")
def propose(case_id: int) -> Response:
    found = case_or_404(case_id)
    kind, _sep, ident = _text("target", 40).partition(":")
    to_user = to_committee = to_office = None
    if ident.isdigit():
        if kind == "user":
            to_user = db().get(User, int(ident))
        elif kind == "committee":
            to_committee = db().get(Committee, int(ident))
        elif kind == "office":
            to_office = db().get(Office, int(ident))
    if to_user is None and to_committee is None and to_office is None:
        flash(_("Choose whom to forward the case to."), "error")
        return redirect(url_for("console.case", case_id=case_id, _anchor="forwarding"))
    note = _text("note", 2000)
    return apply(
        _case_page(case_id, "forwarding"),
        lambda: workflow.propose_forwarding(
            db(),
            found,
            me(),
            to_user=to_user,
            to_committee=to_committee,
            to_office=to_office,
            note=note,
            clock=clock,
        ),
        _("The forwarding was proposed. It goes out when a head SC-Operator approves it."),
    )


@bp.post("/proposals/<int:proposal_id>/decision")
def decide(proposal_id: int) -> Response:
    proposal = db().get(ForwardingProposal, proposal_id)
    found = queries.visible_case(db(), me(), proposal.case_id) if proposal is not None else None
    if proposal is None or found is None:
        refuse("proposal", proposal_id)
    decision = request.form.get("decision")
    if decision not in ("approve", "reject"):
        flash(_("Choose approve or reject."), "error")
        return redirect(url_for("console.case", case_id=found.id, _anchor="forwarding"))
    approve = decision == "approve"
    reason = _text("reason", 2000)
    return apply(
        _case_page(found.id, "forwarding"),
        lambda: workflow.decide_proposal(db(), proposal, me(), approve=approve, reason=reason, clock=clock),
        _("The forwarding was approved.") if approve else _("The forwarding was rejected."),
    )


# ---- SC-Action --------------------------------------------------------------------------------------------


@bp.post("/cases/<int:case_id>/acknowledge")
def acknowledge(case_id: int) -> Response:
    found = case_or_404(case_id)
    return apply(
        _case_page(case_id, "assignment"),
        lambda: workflow.acknowledge(db(), found, me(), clock=clock),
        _("You acknowledged the case."),
    )


@bp.post("/cases/<int:case_id>/actions")
def record_action(case_id: int) -> Response:
    found = case_or_404(case_id)
    text = _text("text")
    return apply(
        _case_page(case_id, "actions"),
        lambda: workflow.record_action(db(), found, me(), text, clock=clock),
        _("The action was recorded."),
    )


@bp.post("/cases/<int:case_id>/resolve")
def resolve(case_id: int) -> Response:
    found = case_or_404(case_id)
    outcome = _text("outcome")
    # The form offers closing an open call back in the same step: ticked, with the reason for it.
    reason = _text("callback_reason", 2000) if request.form.get("close_callback") else None
    try:
        workflow.resolve(db(), found, me(), outcome, close_callback_reason=reason, clock=clock)
        db().commit()
    except CallbackStillOpen as exc:
        db().rollback()
        flash(error_text(exc), "error")
        return redirect(_case_page(case_id, "callback"))  # the call back card: call, or close it
    except WorkflowError as exc:
        db().rollback()
        flash(error_text(exc), "error")
        return redirect(_case_page(case_id, "actions"))
    flash(_("The case was resolved."), "ok")
    if reason:
        flash(_("The call back was closed without calling."), "ok")
    return redirect(_case_page(case_id, "actions"))


# ---- the call back -----------------------------------------------------------------------------------------


@bp.post("/cases/<int:case_id>/callback/cancel")
def cancel_callback(case_id: int) -> Response:
    found = case_or_404(case_id)
    reason = _text("reason", 2000)
    return apply(
        _case_page(case_id, "callback"),
        lambda: callbacks.cancel_callback(db(), found, me(), reason, clock()),
        _("The call back was closed without calling."),
    )


# ---- legal hold --------------------------------------------------------------------------------------------


@bp.post("/cases/<int:case_id>/hold")
def set_hold(case_id: int) -> Response:
    found = case_or_404(case_id)
    reason = _text("reason", 2000)
    return apply(
        _case_page(case_id, "legal-hold"),
        lambda: retention_hold.set_hold(db(), found, me(), reason, clock=clock),
        _("The case is under legal hold: retention erases nothing of it."),
    )


@bp.post("/cases/<int:case_id>/hold/release")
def release_hold(case_id: int) -> Response:
    found = case_or_404(case_id)
    reason = _text("reason", 2000)
    return apply(
        _case_page(case_id, "legal-hold"),
        lambda: retention_hold.release_hold(db(), found, me(), reason, clock=clock),
        _("The legal hold was released."),
    )


# ---- the reporter's number --------------------------------------------------------------------------------


@bp.post("/cases/<int:case_id>/reveal")
def reveal(case_id: int) -> Any:
    """Show the reporter's number on this response only: never in a URL, a flash, a log or a cache."""
    found = case_or_404(case_id)
    reason = _text("reason", 500)
    try:
        number = workflow.reveal_number(db(), found, me(), reason, cipher=cipher(), clock=clock)
    except WorkflowError as exc:
        db().commit()  # a refused reveal is audited too
        flash(error_text(exc), "error")
        return redirect(url_for("console.case", case_id=case_id, _anchor="reporter"))
    log.info("reporter's number of case %d revealed to user id %d", found.id, me().id)
    end_writes()  # the page renders (and its badges read) without holding the write lock
    return render_template(
        "console/reveal.html", nav="queue", case=found, number=number, national=_national(number)
    )


def _national(e164: str) -> str:
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL))
