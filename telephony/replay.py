"""What a webhook for a step the call has already passed may hear: never anything said after that step.

Twilio's signature has no timestamp or nonce (PLATFORM-NOTES): a captured request validates for ever.
Our action URLs carry the step number (`seq`) they were rendered for, and the call keeps the answer to
its latest step (`last_response`). A request for the step just passed is either Twilio retrying because
our answer was slow or lost (same content, within its 15 s timeout) or a replay; only the first needs
the answer, and only while Twilio may still be retrying it. Anything else for a passed step is a replay
(or a twin Twilio no longer waits on): it gets a neutral answer and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from infra.clock import as_utc, utcnow
from telephony import twiml


def is_live_retry(step: int | None, current: int, updated_at: datetime, ended: bool, window_s: float) -> bool:
    """True if the request for `step` may be Twilio retrying the step whose answer the call holds now.

    `step` None is a request without a step number, which our own URLs never send: it is taken for the
    latest step, as it always was. The window runs from the call's last write (`updated_at`, the save of
    its latest step while the caller is on the line; utcnow, the clock that column is written with).
    Once the call has ended nobody listens to an answer, so none is repeated.
    """
    latest = step is None or step == current - 1
    return latest and not ended and not is_expired(updated_at, window_s)


def is_expired(updated_at: datetime, window_s: float) -> bool:
    """True once nothing has written to an ended call for the window: its requests can only be replays."""
    return utcnow() - as_utc(updated_at) > timedelta(seconds=window_s)


def neutral() -> str:
    """The answer to a replayed or long-stale request: an empty document, no prompt, no state of the call."""
    return twiml.empty()
