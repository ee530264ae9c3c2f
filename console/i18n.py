"""Thai first, English on request: Flask-Babel set-up, the words for states, groups and roles, error texts.

The catalogues are `console/translations/{th,en}/LC_MESSAGES/messages.po`, compiled to the committed
`.mo` files (`pybabel compile -d console/translations`; tests/unit/test_translations.py checks they match).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import flask_babel
from flask import Flask, current_app, session
from flask_login import current_user
from markupsafe import Markup, escape

from cases.accounts import LOCALES
from cases.coverage import NoOperatorThere
from cases.models import Office
from cases.reference import display_reference
from cases.texts import N_, Refusal, Text
from cases.thai_dates import format_age, format_datetime
from cases.words import HAZARD_WORDS, MOVE_WORDS, ROLE_WORDS, STATE_WORDS
from infra.config import Config

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DEFAULT_LOCALE = "th"
__all__ = [
    "HAZARD_WORDS",
    "LOCALES",
    "MOVE_WORDS",
    "N_",
    "ROLE_WORDS",
    "STATE_WORDS",
]  # re-exported: the console's modules mark and list from here


def _(message: str, **values: Any) -> str:
    return str(flask_babel.gettext(message, **values))


def current_locale() -> str:
    locale = flask_babel.get_locale()
    return locale.language if locale is not None and locale.language in LOCALES else DEFAULT_LOCALE


def select_locale() -> str:
    """The toggle in this session, else the user's setting, else Thai."""
    chosen = session.get("locale")
    if chosen in LOCALES:
        return str(chosen)
    if current_user.is_authenticated and current_user.user.locale in LOCALES:
        return str(current_user.user.locale)
    return DEFAULT_LOCALE


# Case events (CaseEvent.action) in words.
EVENT_WORDS: dict[str, str] = {
    "route": N_("Routed to an office"),
    "propose": N_("Forwarding proposed"),
    "approve": N_("Forwarding approved"),
    "reject": N_("Forwarding rejected"),
    "acknowledge": N_("Acknowledged"),
    "record_action": N_("Action recorded"),
    "resolve": N_("Resolved"),
    "withdraw": N_("Forwarding proposal withdrawn"),
    "reassign": N_("Reassigned to other SC-Action staff"),
    "reopen": N_("Reopened"),
    "summarised": N_("Summary written"),
    "transcript_corrected": N_("Transcript corrected"),
    "callback_scheduled": N_("Call back scheduled"),
    "callback_moved": N_("Call back moved to the case's new office"),
    "callback_attempt": N_("Call back started"),
    "callback_reached": N_("Reporter reached: call back done"),
    "callback_retry": N_("Call back failed: tried again later"),
    "callback_failed": N_("Call back failed"),
    "callback_gave_up": N_("Call back given up after the last attempt"),
    "callback_operator_unreachable": N_("Call back not started: the operator's phone did not answer"),
    "callback_cancelled": N_("Call back closed without calling"),
    "reminder_escalated": N_("Nobody at the office to remind: the reminder went to the office above"),
    "follow_up_message": N_("The reporter called again and left a further message"),
    "message_added": N_("A further message from the same call joined the case"),
    "retention_erased": N_("Erased by retention"),
    "legal_hold_set": N_("Legal hold set"),
    "legal_hold_released": N_("Legal hold released"),
    "erased_on_request": N_("Erased at the reporter's request"),
}
# What a retention tombstone (CaseEvent "retention_erased", detail "what") says went.
RETENTION_WORDS: dict[str, str] = {
    "caller_number": N_("the reporter's number"),
    "recording": N_("a recording and its machine transcript"),
    "call_events": N_("the caller's path through the menu"),
    "draft": N_("the draft's number, recordings, transcripts and menu path"),
    # Erasure on request (cases.subject.erase) leaves these too.
    "callback": N_("the open call back"),
    "corrections": N_("staff corrections of the transcripts"),
    "free_text": N_("free text that may repeat the reporter's words"),
}
# The state of a case's call back (cases.models.CallbackState).
CALLBACK_STATE_WORDS: dict[str, str] = {
    "pending": N_("Waiting to be called back"),
    "calling": N_("Calling now"),
    "reached": N_("Called back"),
    "gave_up": N_("Given up"),
    "cancelled": N_("Closed without calling"),
}
CALLBACK_WORDS: dict[str, str] = {
    "caller": N_("Call back the number that called"),
    "other": N_("Call back another number"),
    "none": N_("Anonymous: no call back"),
}
# The IVR path (CallEvent.kind) in words; unknown kinds are shown as they are.
CALL_EVENT_WORDS: dict[str, str] = {
    "call_started": N_("Call started"),
    "key": N_("Key pressed"),
    "set": N_("Choice recorded"),
    "entered": N_("Answer entered"),
    "confirmed": N_("Confirmed"),
    "branch": N_("Branch"),
    "recorded": N_("Message recorded"),
    "send": N_("Message sent"),
    "submit": N_("Report submitted"),
    "case_opened": N_("Case opened"),
    "hangup": N_("Hung up"),
    "call_ended": N_("Call ended"),
    "found": N_("Follow-up: report found, its state told"),
    "not_found": N_("Follow-up: no report with that reference"),
    "message_attached": N_("Follow-up message added to the report"),
    "follow_up_case_missing": N_("Follow-up message opened a case of its own: its report was gone"),
    "unexpected_input": N_("An answer the menu did not expect"),
    "language": N_("Language chosen"),
    "transfer_unavailable": N_("No staff to transfer to"),
    "transfer_dial": N_("Transferring to staff"),
    "dial_result": N_("Transfer ended"),
    "no_input": N_("No answer heard"),
    "invalid": N_("An answer that could not be used"),
    "tries_exhausted": N_("No more tries: went on without an answer"),
    "tries_locked": N_("Too many look-ups from this number: went on"),
    "skipped": N_("Skipped"),
    "enter_again": N_("Chose to enter it again"),
    "confirm_invalid": N_("Confirmation: a key that is not on the menu"),
    "confirm_no_input": N_("Confirmation: no key pressed"),
    "confirmed_by_default": N_("Taken as confirmed"),
    "record_again": N_("Chose to record again"),
    "sent_by_default": N_("Message sent without the caller pressing send"),
    "caller_hung_up": N_("The caller hung up"),
}

# Why a recording has no transcript (transcription.models.TranscriptStatus).
TRANSCRIPT_STATUS_WORDS: dict[str, str] = {
    "queued": N_("waiting to be transcribed"),
    "no_speech": N_("no speech was heard"),
    "audio_unreadable": N_("the audio could not be read"),
    "no_model": N_("no speech model for its language is installed"),
    "failed": N_("the transcription failed"),
    "timeout": N_("the transcription took too long"),
}
# The nodes of the hotline's flow (ivr_flows/hotline.yaml) in words; another flow's nodes show as they are.
IVR_NODE_WORDS: dict[str, str] = {
    "welcome": N_("Welcome"),
    "main_menu": N_("Main menu"),
    "transfer_staff": N_("Transfer to staff"),
    "ask_province": N_("Asked for the province"),
    "callback_menu": N_("Call back menu"),
    "check_caller_id": N_("Caller's number checked"),
    "ask_callback_number": N_("Asked for a call back number"),
    "record_message": N_("Message recording"),
    "submit": N_("Report submitted"),
    "close": N_("Goodbye"),
    "ask_reference": N_("Asked for the reference"),
    "follow_up_menu": N_("Follow-up menu"),
    "follow_up_record": N_("Follow-up message recording"),
    "attach_message": N_("Follow-up message added"),
    "follow_up_thanks": N_("Follow-up: thanks"),
    "goodbye": N_("Goodbye"),
    "rescue": N_("Message taken after a fault"),
}
# What a step of the call noted (CallEvent.detail), "label: %(value)s"; an unknown key shows as it is.
CALL_DETAIL_WORDS: dict[str, str] = {
    "key": N_("key %(value)s"),
    "value": N_("answer %(value)s"),
    "duration_s": N_("%(value)s seconds"),
    "to": N_("on to %(value)s"),
    "reference": N_("reference %(value)s"),
    "try": N_("try %(value)s"),
    "status": N_("ending %(value)s"),
    "standing": N_("told: %(value)s"),
    "language": N_("language %(value)s"),
}
CALL_DETAIL_VALUE_WORDS: dict[str, str] = {
    "keys": N_("by the keypad"),
    "speech": N_("by speech"),
    "closed": N_("outside office hours"),
    "no_number": N_("no staff number set"),
    "hangup": N_("the caller hung up"),
    "send": N_("the caller pressed send"),
    "no status callback": N_("no word from Twilio about this call"),
    "ended-unreported": N_("ended without word from Twilio"),
    # Twilio's call and dial statuses, and what a follow-up caller was told of their report.
    "completed": N_("completed"),
    "answered": N_("answered"),
    "busy": N_("busy"),
    "no-answer": N_("no answer"),
    "failed": N_("failed"),
    "canceled": N_("cancelled"),
    "received": N_("received"),
    "being_worked": N_("being worked on"),
    "resolved": N_("resolved"),
}


LANGUAGE_WORDS: dict[str, str] = {"th": N_("Thai"), "en": N_("English")}
ASKED_TWILIO = " (asked Twilio)"


def call_detail(key: str, value: Any) -> str:
    """One thing a step of the call noted, in words: `via: keys` reads "by the keypad"."""
    text = str(value)
    # The reconcile sweep's ending (telephony.service.close_unfinished_call): "<status> (asked Twilio)".
    asked = text.endswith(ASKED_TWILIO)
    text = text.removesuffix(ASKED_TWILIO)
    shown = _(CALL_DETAIL_VALUE_WORDS[text]) if text in CALL_DETAIL_VALUE_WORDS else text
    if asked:
        shown = _("%(status)s (as Twilio told when asked)", status=shown)
    if key == "to":
        shown = words(IVR_NODE_WORDS, value)
    if key == "language":
        shown = words(LANGUAGE_WORDS, value)
    if key in {"via", "opened_by", "reason", "language"}:
        return shown
    message = CALL_DETAIL_WORDS.get(key)
    return _(message, value=shown) if message is not None else f"{key}: {shown}"


# The notes the service itself writes on a call-back attempt (cases.callbacks, telephony.bridge); a note
# staff typed is shown as typed.
ATTEMPT_NOTES: dict[str, str] = {
    "no word from Twilio about this call": N_("no word from Twilio about this call"),
    "the call-back was closed before the bridge": N_("the call back was closed before the call was joined"),
    "the case has no number to call": N_("the case has no number to call"),
}


def quoting(message: str, **quoted: str) -> Markup:
    """A message in the reader's language quoting a provider's own words (in English, as they came), each
    marked translate="no": the reader sees it is a quotation, and the page check knows it is one."""
    marks = {name: f"\x00{i}\x00" for i, name in enumerate(quoted)}
    text = escape(_(message, **marks))
    for name, mark in marks.items():
        text = text.replace(mark, Markup('<span translate="no">%s</span>') % quoted[name])
    return text


def attempt_note(note: str) -> Markup | str:
    """A call-back attempt's note: the service's own in words, "not started: <reason>" and the operator's
    leg status named; what staff typed as it is."""
    if note in ATTEMPT_NOTES:
        return _(ATTEMPT_NOTES[note])
    if note.startswith("not started: "):
        # The provider's own words (telephony.rest), quoted as they came: marked so, as on the worker page.
        return quoting(N_("Not started: %(reason)s"), reason=note.removeprefix("not started: "))
    if note.startswith("operator leg "):
        status = note.removeprefix("operator leg ")
        return _("The operator's phone: %(status)s", status=words(CALL_DETAIL_VALUE_WORDS, status))
    return note


def translate(text: Text) -> str:
    """A domain message in the reader's language: its msgid from the catalogue, its marked words too."""
    if not text.params:
        return _(text.msgid)
    values = {k: translate(v) if isinstance(v, Text) else v for k, v in text.params.items()}
    return _(text.msgid, **values)


def error_text(exc: Exception) -> str:
    """A refusal's message in the reader's language (English as written when not catalogued)."""
    if isinstance(exc, NoOperatorThere):
        # The domain names the offices in English; here they are named in the reader's language.
        names = {"office": office_name(exc.office), "offered": office_name(exc.offered)}
        return _(exc.text.msgid, **{k: v for k, v in names.items() if k in exc.text.params})
    if isinstance(exc, Refusal):
        return translate(exc.text)
    return _(str(exc))


THAI_DIGITS = str.maketrans("0123456789", "๐๑๒๓๔๕๖๗๘๙")


def digits(value: Any) -> str:
    """Numbers in the digits chosen (HOTLINE_CONSOLE_DIGITS) for the Thai console; Arabic in English.

    The one place dates, ages, counts and references pass through, so that a page never mixes the two.
    """
    text = "" if value is None else str(value)
    thai = current_app.config["HOTLINE"].console_digits == "thai" and current_locale() == "th"
    return text.translate(THAI_DIGITS) if thai else text


def words(table: Mapping[Any, str], key: Any) -> str:
    """The words for a state, group, role or event; an unknown value is shown as it is."""
    message = table.get(str(key))
    return _(message) if message is not None else str(key)


def office_name(office: Office | None) -> str:
    if office is None:
        return ""
    return office.name_th if current_locale() == "th" else office.name_en


def init_app(app: Flask) -> None:
    cfg: Config = app.config["HOTLINE"]
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT_LOCALE
    app.config["BABEL_DEFAULT_TIMEZONE"] = cfg.timezone_name
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS_DIR)
    flask_babel.Babel(app, locale_selector=select_locale)

    def when(value: datetime | None, time: bool = True) -> str:
        if value is None:
            return ""
        tz = current_app.config["HOTLINE"].timezone
        return digits(format_datetime(value, tz, current_locale(), time=time))

    def age(value: datetime | None, now: datetime) -> str:
        return "" if value is None else digits(format_age(now - value, current_locale()))

    app.jinja_env.filters.update(
        when=when,
        age=age,
        state_words=lambda s: words(STATE_WORDS, s),
        hazard_words=lambda h: words(HAZARD_WORDS, h),
        role_words=lambda r: words(ROLE_WORDS, r),
        event_words=lambda a: words(EVENT_WORDS, a),
        call_event_words=lambda k: words(CALL_EVENT_WORDS, k),
        ivr_node_words=lambda n: words(IVR_NODE_WORDS, n),
        transcript_status_words=lambda t: words(TRANSCRIPT_STATUS_WORDS, str(t)),
        callback_words=lambda c: words(CALLBACK_WORDS, str(c)),
        callback_state_words=lambda c: words(CALLBACK_STATE_WORDS, str(c)),
        retention_words=lambda w: words(RETENTION_WORDS, str(w)),
        office_name=office_name,
        ref=lambda r: digits(display_reference(r)),
        num=digits,
        attempt_note=attempt_note,
    )
    app.jinja_env.globals.update(current_locale=current_locale, LOCALES=LOCALES, call_detail=call_detail)
