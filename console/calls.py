"""The case page's call-back through the bridge: the button, the attempts, a by-hand log.

The "Call back" button rings the operator's own phone (cases.callbacks.dialing.Dialer, telephony's adapter
handed in by app.py); the bridge then connects the reporter. No page here ever holds the reporter's number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Blueprint, Flask, current_app, flash, redirect, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from cases import callbacks, phones
from cases.callbacks import dialing
from cases.callbacks.settings import CallbackSettings
from cases.models import AttemptOutcome, CallbackAttempt, Case
from cases.staff import User
from cases.workflow import WorkflowError
from console.base import case_or_404, cipher, clock, db, end_writes, me, require_login
from console.i18n import N_, _, error_text, quoting, words
from console.profile import phone_setup
from infra.extensions import Shared

log = logging.getLogger(__name__)
bp = Blueprint("calls", __name__, url_prefix="/console")
bp.before_request(require_login)
call_back_dialer: Shared[dialing.Dialer] = Shared("hotline.dialer")
bridge_limits: Shared[dialing.BridgeLimits] = Shared("hotline.bridge_limits")
NOTE_LIMIT = 2000

OUTCOME_WORDS: dict[str, str] = {
    AttemptOutcome.REQUESTED: N_("Calling the staff member's phone"),
    AttemptOutcome.OPERATOR_RINGING: N_("The staff member's phone is ringing"),
    AttemptOutcome.BRIDGING: N_("Connecting to the reporter"),
    AttemptOutcome.REACHED: N_("Reached"),
    AttemptOutcome.NO_ANSWER: N_("No answer"),
    AttemptOutcome.BUSY: N_("Busy"),
    AttemptOutcome.VOICEMAIL: N_("Voicemail"),
    AttemptOutcome.FAILED: N_("Could not connect"),
    AttemptOutcome.OPERATOR_UNREACHABLE: N_("Not connected (the staff member's phone); not counted"),
    AttemptOutcome.LOGGED: N_("Reached (logged by hand)"),
}
# The choices of the by-hand form, in this order (REACHED is kept as LOGGED by cases.callbacks).
BY_HAND_CHOICES = (
    AttemptOutcome.REACHED,
    AttemptOutcome.NO_ANSWER,
    AttemptOutcome.BUSY,
    AttemptOutcome.VOICEMAIL,
    AttemptOutcome.FAILED,
)


@dataclass
class CallPanel:
    """What the case page shows of call-backs through the bridge, and which of its forms the user may use."""

    can_call: bool = False
    phone_on_file: bool = False
    phone_verified: bool = False  # verified and still allowed: the only phone the bridge rings
    under_way: CallbackAttempt | None = None
    can_log: bool = False
    attempts: list[CallbackAttempt] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    choices: tuple[AttemptOutcome, ...] = BY_HAND_CHOICES


def call_panel(case: Case) -> CallPanel:
    """The template global the call-back partial starts from (one small query set per case page)."""
    verified = phones.verified_phone(me(), phone_setup().policy) is not None
    panel = CallPanel(phone_on_file=bool(me().phone), phone_verified=verified)
    if case.anonymous:
        return panel
    session = db()
    callback = dialing.callback_of(session, case)
    panel.can_call = dialing.may_call_back(session, me(), case, callback)
    panel.can_log = panel.can_call
    if callback is not None and panel.can_call:
        panel.under_way = dialing.attempt_under_way(session, callback, clock())
    panel.attempts = dialing.attempts(session, case)
    ids = {a.operator_id for a in panel.attempts}
    if ids:
        panel.names = dict(session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())
    return panel


def _settings() -> CallbackSettings:
    return callbacks.callback_settings(current_app)


def _dialer() -> dialing.Dialer:
    return call_back_dialer(current_app)


def _back(case_id: int) -> Response:
    return redirect(url_for("console.case", case_id=case_id, _anchor="callback"))


@bp.post("/cases/<int:case_id>/callback/call")
def call_back(case_id: int) -> Response:
    """Ring the signed-in user's phone; when they answer, the bridge dials the reporter."""
    found = case_or_404(case_id)
    try:
        attempt, phone = dialing.begin_call(
            db(),
            found,
            me(),
            clock(),
            cipher=cipher(),
            policy=phone_setup().policy,
            limits=bridge_limits(current_app),
        )
        attempt_id = attempt.id
        # Committed before Twilio is asked: its webhooks for this attempt may come before it answers.
        db().commit()
    except WorkflowError as exc:
        db().rollback()
        flash(error_text(exc), "error")
        return _back(case_id)
    # Twilio is asked with the write lock free: its webhooks (and callers) must not wait on it.
    end_writes()
    try:
        sid = _dialer().call_operator(attempt_id, phone)
    except dialing.DialError as exc:
        reason = exc.reason
    except Exception:
        log.exception("dialer failed for call-back attempt %d", attempt_id)
        reason = "unexpected error"
    else:
        dialing.dial_started(db(), attempt_id, sid)
        db().commit()
        flash(
            _(
                "Your phone is ringing. Answer it: you will hear the case reference, then the reporter's "
                "phone rings. The reporter sees the hotline's number."
            ),
            "ok",
        )
        return _back(case_id)
    dialing.dial_failed(db(), attempt_id, reason, _settings(), clock())
    db().commit()
    # The provider's reason is in its own words (English): quoted, marked so, in the Thai message.
    message = N_(
        "The call could not be started (%(reason)s). Nothing was counted against the reporter: "
        "try again in a moment."
    )
    flash(quoting(message, reason=reason), "error")
    return _back(case_id)


@bp.post("/cases/<int:case_id>/callback/log")
def log_by_hand(case_id: int) -> Response:
    """A call-back made another way (a desk phone, the reporter called in), with a note."""
    found = case_or_404(case_id)
    try:
        outcome = AttemptOutcome(request.form.get("outcome", ""))
    except ValueError:
        flash(_("Choose what happened."), "error")
        return _back(case_id)
    note = request.form.get("note", "")[:NOTE_LIMIT]
    try:
        callbacks.log_by_hand(db(), found, me(), outcome, note, _settings(), clock())
        db().commit()
    except WorkflowError as exc:
        db().rollback()
        flash(error_text(exc), "error")
    else:
        flash(_("The call-back was logged."), "ok")
    return _back(case_id)


def init_app(app: Flask, dialer: dialing.Dialer, limits: dialing.BridgeLimits) -> None:
    """Register the pages and the panel the case page's call-back partial reads; `dialer` rings phones,
    at most `limits` an hour."""
    call_back_dialer.install(app, dialer)
    bridge_limits.install(app, limits)
    app.register_blueprint(bp)
    app.jinja_env.globals["call_panel"] = call_panel
    app.jinja_env.filters["attempt_words"] = lambda o: words(OUTCOME_WORDS, o)
