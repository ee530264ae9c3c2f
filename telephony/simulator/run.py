"""One simulated inbound call against the app: the entry point tests, the benchmark and the CLI use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import requests

from telephony.simulator.config import SimulatorConfig
from telephony.simulator.events import CallEvent, CallResult
from telephony.simulator.media_server import MediaServer
from telephony.simulator.player import Call
from telephony.simulator.script import CallScript, HangupOrder


def run_call(
    config: SimulatorConfig,
    script: CallScript,
    *,
    media: MediaServer | None = None,
    session: requests.Session | None = None,
    on_event: Callable[[CallEvent], None] | None = None,
    recording_wav: bytes | None = None,
    hangup_order: HangupOrder | str | Sequence[str] | None = None,
) -> CallResult:
    """Simulate one inbound call against the app at ``config.connect_base``.

    Without ``media`` a MediaServer runs only for the duration of the call (recording URLs die with it);
    pass one to keep recordings fetchable afterwards. ``recording_wav`` (or ``config.recording_wav``)
    replaces the generated tone as the audio of every recording. ``hangup_order`` (a :class:`HangupOrder`,
    its text form such as ``"status,action"`` or ``"concurrent"``, or a sequence of names) replaces
    ``config.hangup_order`` for this call.
    Raises :class:`ScriptError` when the script does not fit the call (after ending it as a hang-up).
    """
    if hangup_order is not None:
        config = replace(config, hangup_order=HangupOrder.of(hangup_order))
    own_session = session is None
    sess = session if session is not None else requests.Session()
    own_media = media is None
    server = media if media is not None else MediaServer(config.account_sid, config.auth_token)
    try:
        if own_media:
            server.start()
        call = Call(config, script, server, sess, on_event, recording_wav)
        return call.run()
    finally:
        if own_media:
            server.close()
        if own_session:
            sess.close()
