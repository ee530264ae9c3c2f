"""The promise to call a reporter back: due times, settings, attempts, reminders and escalations.

Service functions flush and leave the commit to the caller, like cases.workflow; every change of a
callback writes a CaseEvent (no phone number, no transcript in it). Reminder rows are the truth: the
worker's ReminderSweep sends each one exactly once (see ReminderSweep).

    schedule   working hours and holidays: when a callback is due
    settings   callbacks.yaml and the holidays file, checked at start
    people     who hears about a callback (the holding office, its SC-Operators, heads up the line)
    promise    opening, moving with the case, closing
    attempts   calling back: an attempt, its outcome, a call logged by hand
    dialing    the console's "Call back" button through the bridge
    reminders  the worker's sweep
"""

from __future__ import annotations

from cases.access import may_call_back
from cases.callbacks.attempts import (
    STALE_ATTEMPT,
    UNDER_WAY,
    log_by_hand,
    record_outcome,
    start_attempt,
)
from cases.callbacks.people import case_link, heads, holding_office, responsible_users
from cases.callbacks.promise import cancel_callback, follow_office, open_callback
from cases.callbacks.reminders import ReminderSweep, SweepStats
from cases.callbacks.settings import (
    CallbackSettings,
    CallbackSettingsError,
    callback_settings,
    load_callback_settings,
)

__all__ = [
    "STALE_ATTEMPT",
    "UNDER_WAY",
    "CallbackSettings",
    "CallbackSettingsError",
    "ReminderSweep",
    "SweepStats",
    "callback_settings",
    "cancel_callback",
    "case_link",
    "follow_office",
    "heads",
    "holding_office",
    "load_callback_settings",
    "log_by_hand",
    "may_call_back",
    "open_callback",
    "record_outcome",
    "responsible_users",
    "start_attempt",
]
