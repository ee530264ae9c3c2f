"""Thai first, English on request: Flask-Babel set-up, the words for states, groups and roles, error texts.

The catalogues are `console/translations/{th,en}/LC_MESSAGES/messages.po`, compiled to the committed
`.mo` files (`pybabel compile -d console/translations`; tests/unit/test_translations.py checks they match).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import flask_babel
from flask import Flask, current_app, session
from flask_login import current_user

from cases.accounts import LOCALES
from cases.models import CaseStatus, HazardGroup, Office
from cases.reference import display_reference
from cases.staff import Role
from cases.texts import N_
from cases.thai_dates import format_age, format_datetime
from cases.workflow import IllegalMove
from infra.config import Config

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DEFAULT_LOCALE = "th"
__all__ = ["LOCALES", "N_"]  # re-exported: the console's modules mark and list from here


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


STATE_WORDS: dict[CaseStatus, str] = {
    CaseStatus.DRAFT: N_("New from the phone line"),
    CaseStatus.ROUTED: N_("At an office"),
    CaseStatus.PROPOSED: N_("Waiting for approval"),
    CaseStatus.ASSIGNED: N_("Assigned"),
    CaseStatus.IN_ACTION: N_("Being worked"),
    CaseStatus.RESOLVED: N_("Resolved"),
}
HAZARD_WORDS: dict[HazardGroup, str] = {
    HazardGroup.VIOLENCE: N_("Violence"),
    HazardGroup.ACCIDENT: N_("Accident"),
    HazardGroup.RIGHTS_VIOLATION: N_("Rights violation"),
    HazardGroup.HEALTH_HARM: N_("Physical or mental health harm"),
    HazardGroup.UNSPECIFIED: N_("Not specified"),
}
ROLE_WORDS: dict[Role, str] = {
    Role.AGENT: N_("Call-centre agent"),
    Role.OPERATOR: N_("SC-Operator"),
    Role.HEAD: N_("Head SC-Operator"),
    Role.ACTION: N_("SC-Action"),
    Role.ADMIN: N_("Office admin"),
}
# Case events (CaseEvent.action) in words.
EVENT_WORDS: dict[str, str] = {
    "route": N_("Routed to an office"),
    "propose": N_("Forwarding proposed"),
    "approve": N_("Forwarding approved"),
    "reject": N_("Forwarding rejected"),
    "acknowledge": N_("Acknowledged"),
    "record_action": N_("Action recorded"),
    "resolve": N_("Resolved"),
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
    "follow_up_message": N_("The reporter called again and left a further message"),
    "message_added": N_("A further message from the same call joined the case"),
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
}

# Every fixed message a WorkflowError carries (cases/workflow.py), so that Thai users read them in Thai.
# tests/unit/test_translations.py reads workflow.py and fails when one is missing here.
WORKFLOW_MESSAGES = (
    N_("Only a agent of the case's office can route cases from the phone line."),
    N_("Only a operator of the case's office can summarise a case."),
    N_("Only a operator of the case's office can propose forwarding."),
    N_("Only a head of the case's office can approve or reject forwarding."),
    N_("Nobody approves their own proposal: another head SC-Operator must decide."),
    N_("Route the case to a provincial or district office; a case without one waits here."),
    N_("That recording is not part of this case."),
    N_("The corrected transcript is empty."),
    N_("The case can no longer be edited: it has been forwarded."),
    N_("Only a call-centre agent can edit a case that is new from the phone line."),
    N_("Only an SC-Operator of the case's office can edit it."),
    N_("The case must be routed to an office before its SC-Operators summarise it."),
    N_("The case can no longer be summarised: a forwarding was proposed or approved."),
    N_("The summary is empty."),
    N_("Choose exactly one: a person, a committee, or a district office."),
    N_("Summarise the case before proposing to forward it."),
    N_("That person is not SC-Action of this office."),
    N_("That committee belongs to another office."),
    N_("A case can be forwarded only to a district office under this provincial office."),
    N_("This proposal has already been decided."),
    N_("Give a reason for rejecting the proposal."),
    N_("Only the SC-Action staff the case is assigned to can do this."),
    N_("You have already acknowledged this case."),
    N_("Acknowledge the case before working on it."),
    N_("Describe the action taken."),
    N_("Record the outcome before resolving the case."),
    N_("Say why you need the reporter's number."),
    N_("Only the case's SC-Operators and assigned SC-Action staff may see this number."),
    N_("This reporter left no number (anonymous)."),
    N_("Only an admin of this office can change its staff and committees."),
    N_("Call-centre agents work at the central Safety Center only."),
    N_("That person already has this role at this office."),
    N_("You cannot remove your own admin role: ask another admin."),
    N_("That person does not have this role at this office."),
    N_("Give the committee a name."),
    N_("This committee has cases in its history; remove its members instead."),
    N_("Only SC-Action staff of the office can sit on its committees."),
    N_("That person is already on this committee."),
    N_("That person is not on this committee."),
)
# The fixed messages of cases/callbacks.py's refusals.
CALLBACK_MESSAGES = (
    N_("This callback is closed: there is nobody left to call back."),
    N_("Only the case's SC-Operators and assigned SC-Action staff can log its callback."),
    N_("Choose what happened: reached, no answer, busy, voicemail or failed."),
    N_("Say how the reporter was called back."),
    N_("This case has no callback: the reporter left no number."),
    N_("Give a reason for closing the callback without calling."),
)
MOVE_WORDS: dict[str, str] = {
    "route": N_("route"),
    "propose": N_("propose forwarding"),
    "approve": N_("approve"),
    "reject": N_("reject"),
    "acknowledge": N_("acknowledge"),
    "record_action": N_("record an action"),
    "resolve": N_("resolve"),
}


def error_text(exc: Exception) -> str:
    """A WorkflowError's message in the reader's language (English as written when not catalogued)."""
    if isinstance(exc, IllegalMove):
        return _(
            "A case that is “%(state)s” cannot be given the action “%(action)s”.",
            state=_(STATE_WORDS[exc.status]),
            action=_(MOVE_WORDS.get(exc.move.value, exc.move.value)),
        )
    return _(str(exc))


def words(table: dict[Any, str], key: Any) -> str:
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
        return format_datetime(value, current_app.config["HOTLINE"].timezone, current_locale(), time=time)

    def age(value: datetime | None, now: datetime) -> str:
        return "" if value is None else format_age(now - value, current_locale())

    app.jinja_env.filters.update(
        when=when,
        age=age,
        state_words=lambda s: words(STATE_WORDS, s),
        hazard_words=lambda h: words(HAZARD_WORDS, h),
        role_words=lambda r: words(ROLE_WORDS, r),
        event_words=lambda a: words(EVENT_WORDS, a),
        call_event_words=lambda k: words(CALL_EVENT_WORDS, k),
        callback_words=lambda c: words(CALLBACK_WORDS, str(c)),
        callback_state_words=lambda c: words(CALLBACK_STATE_WORDS, str(c)),
        office_name=office_name,
        ref=display_reference,
    )
    app.jinja_env.globals.update(current_locale=current_locale, LOCALES=LOCALES)
