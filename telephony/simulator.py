"""A call simulator that plays Twilio's part against a running app.

Trainers and developers "call" the hotline with it, and the end-to-end tests and the benchmark drive it.
It requests our webhooks the way Twilio does (signed, with the standard voice parameters), follows the
TwiML it gets back verb by verb, and is strict where Twilio is strict: a call that would fail on Twilio
fails here, with the Twilio error code.

Usage::

    config = SimulatorConfig(connect_base="http://127.0.0.1:5001", public_base="https://hotline.example",
                             account_sid="AC...", auth_token="...")
    result = run_call(config, CallScript.parse("1,10#,1,3,record:5,1"))
    print(result.ended_by, result.spoken_text())

Twilio behaviour this module relies on (checked against Twilio's documentation and issue threads in the
search corpus; searched: "TwiML Record verb recordingStatusCallback no audio", "Gather actionOnEmptyResult
finishOnKey numDigits", "error 12200 schema validation", "error 12300 Invalid Content-Type", "11205 HTTP
connection failure", "Dial action DialCallStatus", "Reject reason", "voice webhook MIME types"):

* Signature: HMAC-SHA1 over the public URL (+ sorted POST params) with the auth token
  (``RequestValidator.compute_signature``). GET requests carry the parameters in the query string and are
  signed over the full URL only.
* The first webhook of an inbound call carries ``CallStatus=ringing`` (Twilio answers the call only once it
  has TwiML that is not ``<Reject>``); later requests carry ``in-progress``, and requests made after the
  caller hung up carry ``completed``. Configurable via ``SimulatorConfig.first_call_status``.
* Responses (docs "TwiML Voice: Your Response"): ``text/xml``, ``application/xml`` and also ``text/html``
  are parsed as TwiML; ``text/plain`` is read aloud then the call hangs up; ``audio/*`` is played then the
  call hangs up; any other type is error 12300. Twilio follows HTTP redirects like a browser (11215 when
  there are too many). Non-2xx is 11200 (the error dictionary also lists 11217 for 4xx/5xx; we report
  11200 and keep the status). Twilio waits 15 s in total for an answer, else 11205. A body that does not
  parse or whose root is not ``<Response>`` is 12100. Verb names are case sensitive; an unknown verb or an
  element nested where the schema does not allow it is 12200 (a "warning" in the dictionary, but the call
  ends with an application error), detected when the document is loaded, before any verb runs.
* ``<Gather>``: ``action`` defaults to the current document URL, ``method`` POST, ``finishOnKey`` ``#``
  (the empty string disables it), ``timeout`` 5, ``input`` ``dtmf``. If the timeout passes with no input,
  or the caller presses only the finish key, Twilio does not request the action: it goes on to the verb
  after the ``<Gather>``; ``actionOnEmptyResult="true"`` makes it post the action with empty ``Digits``.
  The finish key is not part of ``Digits``; with ``numDigits`` input ends when that many digits came.
  Speech posts ``SpeechResult`` and ``Confidence``.
* ``<Record>``: ``action`` defaults to the current document URL (unlike ``<Dial>``), ``finishOnKey``
  ``1234567890*#``, ``maxLength`` 3600, ``timeout`` 5. The action gets ``RecordingUrl``, ``RecordingSid``,
  ``RecordingDuration`` and ``Digits`` (the key, or ``hangup``). **If the recording is empty (caller
  silent), Twilio does not request the action URL and continues with the next verb of the current
  document.** ``recordingStatusCallbackEvent`` (``in-progress``, ``completed``, ``absent``; default
  ``completed``) chooses the callbacks; ``absent`` is the status of a recording with no audio (too short or
  silent). The callback is asynchronous: here it is posted right after the action response arrived, so it
  reaches the app after the action webhook, as it may on Twilio. After a caller hangs up the action is still
  requested (``Digits=hangup``, or the key pressed just before: ``record:5:#:hangup``) but the TwiML it
  returns is not executed.
* End of a call (PLATFORM-NOTES, "End of a call has no order"): when the caller hangs up with a recording
  outstanding, the ``<Record>`` action, the recording status callback and the call status callback have
  no promised order and may race on different threads. ``SimulatorConfig.hangup_order`` (a
  :class:`HangupOrder`) plays any fixed order, a lost request, or all three at once.
* REST reads (twilio-python's fixtures for these resources; docs "Recording resource", "Call resource",
  "error 20003"): ``GET …/Recordings.json`` (CallSid, ``DateCreated``/``DateCreated<``/``DateCreated>``,
  PageSize, Page, PageToken; newest first; ``next_page_uri`` relative to the API base) and
  ``GET …/Calls/{CallSid}.json``. Good credentials on another account's path are 20003 (401), as for a
  subaccount's credentials on its parent.
* ``<Dial>``: no default ``action``; without one the call goes on with the next verb. With one, it posts
  ``DialCallStatus`` (``completed``, ``busy``, ``no-answer``, ``failed``, ``canceled``), ``DialCallSid``
  and ``DialCallDuration``, and verbs after the ``<Dial>`` are unreachable.
* ``<Redirect>`` defaults to POST. ``<Reject>`` as the first verb leaves the call unanswered: status
  ``busy`` (``reason="busy"``) or ``no-answer`` (default ``rejected``). The end of a document hangs up.
* Media: ``RecordingUrl`` has no extension (``.wav`` default, ``.mp3`` also exists), and with "enforce HTTP
  auth on media" it needs basic auth (account SID, auth token); Twilio answers 401 with
  ``WWW-Authenticate: Basic realm="Twilio API"``. ``DELETE`` on the recording path removes it.
"""

from __future__ import annotations

import argparse
import array
import base64
import email.utils
import hmac
import io
import json
import math
import os
import random
import re
import secrets
import sys
import threading
import time
import uuid
import wave
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Final, Literal, cast
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import requests
from twilio.request_validator import RequestValidator

__all__ = [
    "DEFAULT_HANGUP_ORDER",
    "HANGUP_PURPOSES",
    "HANGUP_REQUESTS",
    "SCRIPT_GRAMMAR",
    "CallEvent",
    "CallResult",
    "CallScript",
    "CallerAction",
    "EndedBy",
    "EventKind",
    "HangupOrder",
    "HangupRequest",
    "MediaFault",
    "MediaServer",
    "OutboundCall",
    "OutboundCalls",
    "OutboundPlan",
    "ScriptError",
    "SentMessage",
    "SimulatorConfig",
    "generate_wav",
    "main",
    "parse_token",
    "run_call",
    "wav_duration",
]

EventKind = Literal[
    "say",
    "play",
    "pause",
    "gather-prompt",
    "input",
    "record",
    "dial",
    "redirect",
    "request",
    "error",
    "warning",
    "hangup",
    "reject",
    "end-of-call",
]
EndedBy = Literal["hangup-verb", "end-of-document", "caller-hangup", "error", "loop-guard"]
ActionKind = Literal["digits", "silence", "speech", "record", "hangup", "dial"]

API_VERSION: Final = "2010-04-01"
TWIML_CONTENT_TYPES: Final = frozenset({"text/xml", "application/xml", "text/html"})
DIAL_STATUSES: Final = frozenset({"completed", "no-answer", "busy", "failed", "canceled"})
SPEECH_CONFIDENCE: Final = "0.9"
DEFAULT_RECORD_SECONDS: Final = 5
DEFAULT_DIAL_SECONDS: Final = 10
MAX_HTTP_REDIRECTS: Final = 10
EXCERPT_CHARS: Final = 300

# Verbs Twilio knows. Those in _SKIPPED_VERBS do not block the call flow and are skipped with a warning;
# the other known-but-unsimulated ones end the call (the simulator cannot say what Twilio would do next).
_SIMULATED_VERBS: Final = frozenset(
    {"Say", "Play", "Pause", "Gather", "Record", "Dial", "Redirect", "Hangup", "Reject"}
)
_SKIPPED_VERBS: Final = frozenset({"Start", "Stop"})
_UNSIMULATED_VERBS: Final = frozenset({"Enqueue", "Leave", "Connect", "Pay", "Refer", "Echo", "Sms", "Queue"})
_GATHER_CHILDREN: Final = frozenset({"Say", "Play", "Pause"})
_DIAL_CHILDREN: Final = frozenset({"Number", "Client", "Sip", "Conference", "Queue", "Application"})
_CHILDLESS_VERBS: Final = frozenset({"Play", "Pause", "Record", "Redirect", "Hangup", "Reject"})
_NO_FETCH_ATTR: Final = "{urn:simulator}no-fetch"


# --------------------------------------------------------------------------------------------------
# The end of a call: which of Twilio's three hang-up requests arrive, and in what order
# --------------------------------------------------------------------------------------------------

HangupRequest = Literal["action", "recording", "status"]
HANGUP_REQUESTS: Final[tuple[HangupRequest, ...]] = ("action", "recording", "status")
# The purpose each one carries in CallEvents (and in CallResult.requests(purpose)).
HANGUP_PURPOSES: Final[Mapping[HangupRequest, str]] = {
    "action": "record-action",
    "recording": "recording-status",
    "status": "status-callback",
}
_HANGUP_HELP: Final = (
    "name action, recording and status (each at most once) separated by commas, in the order they arrive; "
    "'concurrent' for all three at once (or 'concurrent:NAMES', plus 'spread=MS' and 'seed=N' items); "
    "'none' for none of them"
)


@dataclass(frozen=True)
class HangupOrder:
    """How Twilio delivers the end of a call when the caller hangs up with a recording outstanding.

    Three requests end such a call: the ``<Record>`` action (``action``; ``Digits=hangup``, or the key
    pressed just before hanging up), the recording status callback (``recording``; ``completed``, or
    ``absent`` for an empty recording) and the number's call status callback (``status``). Twilio promises
    no order between them (PLATFORM-NOTES, "End of a call has no order").

    ``requests`` names the ones delivered, in order; each waits for the answer to the one before. A name
    left out never arrives (Twilio gave up on it). With ``concurrent`` they are released together from
    one thread each, behind a :class:`threading.Barrier`; each thread then waits a random 0 to
    ``spread_ms`` ms (drawn from ``random.Random(seed)``) before it sends. A request the call did not
    produce (no action for an empty recording, no callback the TwiML did not subscribe to) is skipped.
    """

    requests: tuple[HangupRequest, ...] = HANGUP_REQUESTS
    concurrent: bool = False
    spread_ms: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        problem = _hangup_order_problem(self.requests, self.concurrent, self.spread_ms)
        if problem is not None:
            raise ValueError(f"bad hang-up order {str(self)!r}: {problem}; {_HANGUP_HELP}")

    @classmethod
    def parse(cls, text: str) -> HangupOrder:
        """Read ``"action,status,recording"``, ``"status"``, ``"concurrent"``, ``"concurrent:action,status"``,
        ``"concurrent:spread=4,seed=7"`` or ``"none"``; a bad value raises ValueError naming it."""
        raw = text.strip()
        low = raw.lower()
        if low == "none":
            return cls(requests=())
        concurrent = low == "concurrent" or low.startswith("concurrent:")
        body = low[len("concurrent") :].removeprefix(":") if concurrent else low
        names: list[str] = []
        spread_ms, seed = 0.0, None
        for item in [part.strip() for part in body.split(",")] if body else []:
            key, eq, value = item.partition("=")
            if eq and key in ("spread", "seed"):
                try:
                    if key == "spread":
                        spread_ms = float(value.removesuffix("ms"))
                    else:
                        seed = int(value)
                except ValueError:
                    raise ValueError(
                        f"bad hang-up order {raw!r}: {item!r} is not a number; {_HANGUP_HELP}"
                    ) from None
                continue
            names.append(item)
        if not names and not concurrent:
            problem: str | None = "no request named"
        else:
            problem = _hangup_order_problem(names, concurrent, spread_ms)
        if problem is not None:
            raise ValueError(f"bad hang-up order {raw!r}: {problem}; {_HANGUP_HELP}")
        requests = tuple(cast(HangupRequest, n) for n in names) if names else HANGUP_REQUESTS
        return cls(requests=requests, concurrent=concurrent, spread_ms=spread_ms, seed=seed)

    @classmethod
    def of(cls, value: HangupOrder | str | Sequence[str]) -> HangupOrder:
        """A HangupOrder from itself, its text form, or a sequence of names."""
        if isinstance(value, HangupOrder):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        return cls.parse(",".join(value)) if value else cls(requests=())

    def __str__(self) -> str:
        """The text form :meth:`parse` reads back."""
        if not self.concurrent:
            return ",".join(self.requests) or "none"
        items: list[str] = [] if self.requests == HANGUP_REQUESTS else list(self.requests)
        if self.spread_ms:
            items.append(f"spread={self.spread_ms:g}")
        if self.seed is not None:
            items.append(f"seed={self.seed}")
        return "concurrent" + (":" + ",".join(items) if items else "")

    def delays_s(self, count: int) -> list[float]:
        """The wait of each concurrent request after the barrier, in seconds (all 0 without a spread)."""
        if not self.spread_ms:
            return [0.0] * count
        rng = random.Random(self.seed)  # noqa: S311 - jitter for a test, not a secret
        return [rng.uniform(0, self.spread_ms) / 1000 for _ in range(count)]


def _hangup_order_problem(requests: Sequence[str], concurrent: bool, spread_ms: float) -> str | None:
    seen: set[str] = set()
    for name in requests:
        if name not in HANGUP_REQUESTS:
            return f"unknown request {name!r}"
        if name in seen:
            return f"{name!r} named twice"
        seen.add(name)
    if not 0 <= spread_ms <= 1000:  # also false for NaN
        return "the spread must be 0 to 1000 ms"
    if spread_ms and not concurrent:
        return "a spread needs concurrent delivery"
    return None


DEFAULT_HANGUP_ORDER: Final = HangupOrder()


# --------------------------------------------------------------------------------------------------
# Configuration, events, results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatorConfig:
    """Where the app is, what it believes its public URL is, and the Twilio account it expects."""

    connect_base: str
    public_base: str
    account_sid: str
    auth_token: str
    from_number: str = "+66812345678"
    to_number: str = "+6621266565"
    max_requests: int = 200
    timeout_s: float = 15.0
    from_country: str = "TH"
    to_country: str = "TH"
    voice_path: str = "/twilio/voice"
    status_path: str = "/twilio/status"
    first_call_status: str = "ringing"
    recording_wav: bytes | None = None
    fetch_media: bool = True
    # Which end-of-call requests arrive, and how, when the caller hangs up with a recording outstanding.
    hangup_order: HangupOrder = DEFAULT_HANGUP_ORDER

    def public_url(self, path: str) -> str:
        return self.public_base.rstrip("/") + "/" + path.lstrip("/")


@dataclass(frozen=True)
class CallEvent:
    """One thing that happened on the simulated call. Fields not relevant to ``kind`` are None."""

    kind: EventKind
    text: str = ""
    language: str | None = None
    voice: str | None = None
    url: str | None = None
    method: str | None = None
    status: int | None = None
    elapsed_ms: float | None = None
    code: int | None = None
    body_excerpt: str | None = None
    purpose: str | None = None
    outcome: str | None = None
    seconds: float | None = None
    params: Mapping[str, str] | None = None
    order: int | None = None  # an end-of-call request: its place in the order they were sent (1-based)
    offset_ms: float | None = None  # an end-of-call request: sent this long after the first one was

    def describe(self) -> str:
        """A one-line, human-readable rendering (for terminals and test failure messages)."""
        if self.kind == "say":
            return f"SAY [{self.language or '-'} / {self.voice or 'default'}] {self.text}"
        if self.kind == "play":
            return f"PLAY {self.url or self.text}"
        if self.kind == "pause":
            return f"PAUSE {self.seconds:g}s" if self.seconds is not None else "PAUSE"
        if self.kind == "request":
            status = self.status if self.status is not None else "no answer"
            ms = f"{self.elapsed_ms:.0f} ms" if self.elapsed_ms is not None else "-"
            end = ""
            if self.order is not None:
                end = f" [end of call #{self.order}, sent +{self.offset_ms or 0:.1f} ms]"
            return f"HTTP {self.method} {self.url} ({self.purpose}){end} -> {status} in {ms}"
        if self.kind in ("error", "warning"):
            code = f" {self.code}" if self.code is not None else ""
            status = f" [HTTP {self.status}]" if self.status is not None else ""
            return f"{self.kind.upper()}{code}{status}: {self.text}"
        parts = [self.kind.upper(), self.text]
        if self.outcome:
            parts.append(f"-> {self.outcome}")
        if self.url:
            parts.append(self.url)
        return " ".join(p for p in parts if p)


@dataclass
class CallResult:
    call_sid: str
    events: list[CallEvent] = field(default_factory=list)
    ended_by: EndedBy = "end-of-document"
    recordings: list[str] = field(default_factory=list)
    call_status: str = "completed"
    duration_s: int = 0

    def spoken_text(self) -> str:
        """All ``<Say>`` text, in order, joined with newlines."""
        return "\n".join(e.text for e in self.events if e.kind == "say")

    def of_kind(self, kind: EventKind) -> list[CallEvent]:
        return [e for e in self.events if e.kind == kind]

    def errors(self) -> list[CallEvent]:
        return self.of_kind("error")

    def requests(self, purpose: str | None = None) -> list[CallEvent]:
        return [e for e in self.events if e.kind == "request" and (purpose is None or e.purpose == purpose)]

    def end_of_call(self) -> list[CallEvent]:
        """The end-of-call requests sent after the caller hung up with a recording outstanding, in the
        order they were sent (``order`` 1, 2, …); see :class:`HangupOrder`."""
        sent = [e for e in self.events if e.kind == "request" and e.order is not None]
        return sorted(sent, key=lambda e: (e.order or 0, e.offset_ms or 0.0))


class ScriptError(ValueError):
    """The caller's script does not fit what the call asked for (or a token is malformed).

    When raised from :func:`run_call`, the call has been ended as a caller hang-up (the status callback was
    posted) and ``result`` holds what happened up to that point.
    """

    def __init__(self, message: str, result: CallResult | None = None) -> None:
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------------------------------
# The caller's script
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallerAction:
    """One parsed script token."""

    kind: ActionKind
    raw: str  # the token as written
    digits: str = ""
    speech: str = ""
    seconds: int = 0
    finish_key: str = "#"
    hangup_during: bool = False  # record:N:hangup: the caller hangs up while recording
    hangup_after: bool = False  # record:N:KEY:hangup: the caller presses KEY and hangs up at once
    dial_status: str = "completed"


_DIGITS_RE: Final = re.compile(r"[0-9*#]+")
_RECORD_RE: Final = re.compile(r"record(?::(\d+))?(?::(hangup|[0-9*#]))?(?::(hangup))?", re.IGNORECASE)
_DIAL_RE: Final = re.compile(r"dial(?::([a-z-]+))?(?::(\d+))?", re.IGNORECASE)

SCRIPT_GRAMMAR: Final = (
    "digits like 1, 10#, 0812345678# (keys 0-9 * #); '-' or 'silence' for no input; "
    "'speech:TEXT'; 'record', 'record:SECONDS', 'record:SECONDS:KEY' (KEY ends the recording), "
    "'record:SECONDS:hangup' (hang up while recording) or 'record:SECONDS:KEY:hangup' (press KEY and hang up "
    "at once); "
    "'dial', 'dial:STATUS' or 'dial:STATUS:SECONDS' (STATUS: completed, no-answer, busy, failed, canceled); "
    "'hangup'"
)


def parse_token(token: str, position: int | None = None) -> CallerAction:
    """Parse one script token; raise :class:`ScriptError` (a ValueError) naming it and its position."""
    raw = token.strip()
    where = f" at position {position}" if position is not None else ""

    def bad(reason: str) -> ScriptError:
        return ScriptError(f"bad script token {token!r}{where}: {reason}; expected {SCRIPT_GRAMMAR}")

    if not raw:
        raise bad("empty token")
    low = raw.lower()
    if low in ("-", "silence"):
        return CallerAction(kind="silence", raw=raw)
    if low == "hangup":
        return CallerAction(kind="hangup", raw=raw)
    if _DIGITS_RE.fullmatch(raw):
        return CallerAction(kind="digits", raw=raw, digits=raw)
    if low.startswith("speech:"):
        text = raw[len("speech:") :].strip()
        if not text:
            raise bad("speech needs text after 'speech:'")
        return CallerAction(kind="speech", raw=raw, speech=text)
    if low.startswith("record"):
        m = _RECORD_RE.fullmatch(raw)
        if m is None:
            raise bad("malformed record token")
        seconds = int(m.group(1)) if m.group(1) is not None else DEFAULT_RECORD_SECONDS
        if seconds > 86400:
            raise bad("a recording cannot be longer than 86400 seconds")
        tail = (m.group(2) or "#").lower()
        if tail == "hangup":
            if m.group(3) is not None:
                raise bad("'hangup' twice; to press a key and then hang up write record:SECONDS:KEY:hangup")
            return CallerAction(kind="record", raw=raw, seconds=seconds, hangup_during=True)
        return CallerAction(
            kind="record", raw=raw, seconds=seconds, finish_key=tail, hangup_after=m.group(3) is not None
        )
    if low.startswith("dial"):
        m = _DIAL_RE.fullmatch(raw)
        if m is None:
            raise bad("malformed dial token")
        status = (m.group(1) or "completed").lower()
        if status not in DIAL_STATUSES:
            raise bad(f"unknown dial outcome {status!r}")
        default = DEFAULT_DIAL_SECONDS if status == "completed" else 0
        seconds = int(m.group(2)) if m.group(2) is not None else default
        return CallerAction(kind="dial", raw=raw, dial_status=status, seconds=seconds)
    raise bad("not a known token")


class CallScript:
    """The caller's inputs: one token per ``<Gather>``/``<Record>`` (and optionally per ``<Dial>``).

    The script itself is immutable; every :func:`run_call` reads it from the start, so one script can be
    used for many calls. When it runs out, ``input_fn`` (if given, e.g. ``input`` on a terminal) is asked
    with a prompt that says what the call is waiting for; without one the caller hangs up.

    A ``<Dial>`` uses the next token only if it is a ``dial…`` or ``hangup`` token; otherwise the dialled
    party answers (``completed``) and no token is used.
    """

    def __init__(
        self, actions: Iterable[CallerAction] = (), *, input_fn: Callable[[str], str] | None = None
    ) -> None:
        self.actions: tuple[CallerAction, ...] = tuple(actions)
        self.input_fn = input_fn

    @classmethod
    def parse(cls, text: str | Sequence[str], *, input_fn: Callable[[str], str] | None = None) -> CallScript:
        """Parse ``"1,10#,1,3,record:5,1"`` (or a list of tokens). Positions in errors are 1-based."""
        tokens = (text.split(",") if text.strip() else []) if isinstance(text, str) else list(text)
        return cls((parse_token(t, i) for i, t in enumerate(tokens, start=1)), input_fn=input_fn)

    def __repr__(self) -> str:
        tokens = ",".join(a.raw for a in self.actions)
        return f"CallScript.parse({tokens!r}{', input_fn=...' if self.input_fn else ''})"


class _ScriptCursor:
    def __init__(self, script: CallScript) -> None:
        self._script = script
        self._pos = 0

    def peek(self) -> CallerAction | None:
        if self._pos < len(self._script.actions):
            return self._script.actions[self._pos]
        return None

    def take(self, verb: str, accepts: frozenset[ActionKind], prompt: str) -> CallerAction | None:
        """Next action for ``verb``; None when the script ran out and nobody can be asked."""
        action = self.peek()
        if action is not None:
            self._pos += 1
            if action.kind not in accepts:
                raise ScriptError(
                    f"script token {action.raw!r} at position {self._pos} does not fit the {verb} the call "
                    f"is waiting for ({prompt}); it accepts {', '.join(sorted(accepts))}"
                )
            return action
        if self._script.input_fn is None:
            return None
        return self._ask(verb, accepts, prompt)

    def _ask(self, verb: str, accepts: frozenset[ActionKind], prompt: str) -> CallerAction:
        fn = self._script.input_fn
        assert fn is not None
        note = ""
        for _attempt in range(5):
            try:
                answer = fn(f"{note}[{verb}: {prompt}] > ")
            except EOFError:
                return CallerAction(kind="hangup", raw="hangup")
            if verb == "Dial" and not answer.strip():
                return CallerAction(kind="dial", raw="dial", seconds=DEFAULT_DIAL_SECONDS)
            try:
                action = parse_token(answer)
            except ScriptError as exc:
                note = f"{exc}\n"
                continue
            if action.kind in accepts:
                return action
            note = f"{action.raw!r} does not fit a {verb}; it accepts {', '.join(sorted(accepts))}\n"
        raise ScriptError(f"no usable answer for the {verb} after 5 attempts")


# --------------------------------------------------------------------------------------------------
# Audio helpers
# --------------------------------------------------------------------------------------------------


def generate_wav(seconds: float, *, rate: int = 8000, frequency: float = 440.0, level: float = 0.05) -> bytes:
    """``seconds`` of a quiet sine tone as 16-bit mono PCM WAV (8 kHz by default, like a phone line)."""
    n = max(0, round(seconds * rate))
    amplitude = level * 32767
    step = 2 * math.pi * frequency / rate
    samples = array.array("h", (round(amplitude * math.sin(step * i)) for i in range(n)))
    if sys.byteorder != "little":
        samples.byteswap()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def wav_duration(wav_bytes: bytes) -> float | None:
    """Duration in seconds of a WAV file, or None if it is not one ``wave`` can read."""
    try:
        with wave.open(io.BytesIO(wav_bytes), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError):
        return None


# --------------------------------------------------------------------------------------------------
# MediaServer: Twilio's recording media behind HTTP basic auth
# --------------------------------------------------------------------------------------------------

_MEDIA_PATH_RE: Final = re.compile(
    r"/2010-04-01/Accounts/(?P<account>[^/]+)/Recordings/(?P<sid>[^/.]+)(?P<ext>\.[A-Za-z0-9]+)?"
)


# Twilio's REST create endpoints served here (the resource's name: Messages, …).
_REST_CREATE_RE: Final = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/(?P<resource>[A-Za-z]+)\.json")
_E164_RE: Final = re.compile(r"\+[1-9]\d{6,14}")
_MESSAGING_SERVICE_RE: Final = re.compile(r"MG[0-9a-fA-F]{32}")
SMS_BODY_MAX: Final = 1600


MediaFault = Literal["http500", "http503", "http404", "slow", "stall", "truncated", "html"]
_MEDIA_FAULTS: Final = frozenset({"http500", "http503", "http404", "slow", "stall", "truncated", "html"})


@dataclass
class _Fault:
    kind: MediaFault
    remaining: int | None  # requests it still spoils; None: every one
    delay_s: float


@dataclass(frozen=True)
class SentMessage:
    """An SMS the Messages endpoint accepted."""

    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str


# What the fake Twilio holds for the REST reads: recordings (with or without media) and calls.
_RECORDING_LIST_RE: Final = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Recordings\.json")
_CALL_PATH_RE: Final = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<sid>[^/.]+)\.json")
CALL_END_STATUSES: Final = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000
_DATE_FILTER_OPS: Final = frozenset({"", "<", "<=", ">", ">="})


@dataclass
class _HeldRecording:
    sid: str
    wav: bytes | None  # None: no media (an ``absent`` recording)
    call_sid: str | None
    duration_s: int
    status: str
    date_created: datetime
    seq: int  # registration order: the tie-break between equal creation times


@dataclass
class _HeldCall:
    sid: str
    from_: str
    to: str
    direction: str
    status: str
    date_created: datetime
    end_time: datetime | None = None
    duration_s: int | None = None


def _rfc2822(moment: datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(UTC).replace(microsecond=0))


def _date_filter(key: str, value: str) -> Callable[[datetime], bool]:
    """One ``DateCreated`` filter of a list request; ValueError when it is not one Twilio reads.

    ``DateCreated=D`` matches that UTC day; ``DateCreated<=D`` (sent as the key ``DateCreated<``) and
    ``DateCreated>=D`` (``DateCreated>``) are inclusive. D is ``YYYY-MM-DD`` (compared by UTC day) or an
    ISO 8601 time such as ``2024-05-01T00:00:00Z`` (what twilio-python sends; compared as an instant).
    """
    op = key[len("DateCreated") :]
    if op not in _DATE_FILTER_OPS:
        raise ValueError(f"unknown filter {key!r}")
    text = value.strip()
    try:
        if "T" not in text:
            day = datetime.strptime(text, "%Y-%m-%d").date()
            if op == "":
                return lambda created: created.astimezone(UTC).date() == day
            if op.startswith("<"):
                return lambda created: created.astimezone(UTC).date() <= day
            return lambda created: created.astimezone(UTC).date() >= day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{key} {value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if op == "":
        return lambda created: created.astimezone(UTC).date() == moment.astimezone(UTC).date()
    if op.startswith("<"):
        return lambda created: created <= moment
    return lambda created: created >= moment


class _Holdings:
    """The recordings and calls of one fake Twilio account, rendered as the 2010-04-01 API renders them."""

    def __init__(self, account_sid: str) -> None:
        self.account_sid = account_sid
        self.lock = threading.Lock()
        self.recordings: dict[str, _HeldRecording] = {}
        self.calls: dict[str, _HeldCall] = {}
        self._seq = 0

    def add_recording(
        self,
        sid: str,
        wav: bytes | None,
        *,
        call_sid: str | None,
        duration_s: int | None,
        status: str,
        date_created: datetime | None,
    ) -> None:
        if duration_s is None:
            measured = wav_duration(wav) if wav is not None else None
            duration_s = round(measured) if measured is not None else 0
        created = (date_created or datetime.now(UTC)).astimezone(UTC)
        with self.lock:
            self._seq += 1
            self.recordings[sid] = _HeldRecording(sid, wav, call_sid, duration_s, status, created, self._seq)

    def recording_json(self, held: _HeldRecording, media_base: str) -> dict[str, object]:
        path = f"/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{held.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid": held.call_sid,
            "conference_sid": None,
            "channels": 1,
            "date_created": _rfc2822(held.date_created),
            "date_updated": _rfc2822(held.date_created),
            "start_time": _rfc2822(held.date_created),
            "price": None,
            "price_unit": "USD",
            "duration": str(held.duration_s),
            "sid": held.sid,
            "source": "RecordVerb",
            "status": held.status,
            "error_code": 16101 if held.status == "absent" else None,
            "encryption_details": None,
            "media_url": media_base + path,
            "uri": path + ".json",
            "subresource_uris": {
                "add_on_results": path + "/AddOnResults.json",
                "transcriptions": path + "/Transcriptions.json",
            },
        }

    def recordings_page(self, query: Mapping[str, str], media_base: str) -> tuple[int, dict[str, object]]:
        """``GET …/Recordings.json``: newest first, filtered by CallSid and DateCreated, one page."""
        try:
            page_size = int(query.get("PageSize", DEFAULT_PAGE_SIZE))
            page = int(query.get("Page", 0))
            tests = [_date_filter(k, v) for k, v in query.items() if k.startswith("DateCreated")]
        except ValueError as exc:
            return _twilio_error(400, 20001, f"Invalid parameter: {exc}")
        if not 1 <= page_size <= MAX_PAGE_SIZE or page < 0:
            return _twilio_error(400, 20001, f"Invalid parameter: PageSize 1-{MAX_PAGE_SIZE}, Page 0 or more")
        call_sid = query.get("CallSid")
        with self.lock:
            held = sorted(self.recordings.values(), key=lambda r: (r.date_created, r.seq), reverse=True)
        matching = [
            r
            for r in held
            if (call_sid is None or r.call_sid == call_sid) and all(test(r.date_created) for test in tests)
        ]
        start = page * page_size
        token = query.get("PageToken", "")
        # Twilio's token names the last item of the page before: the next page starts after it even when
        # recordings were added or deleted meanwhile.
        after = next((i for i, r in enumerate(matching) if "PA" + r.sid == token), None)
        if after is not None:
            start = after + 1
        items = matching[start : start + page_size]
        filters = [(k, v) for k, v in query.items() if k not in ("PageSize", "Page", "PageToken")]
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Recordings.json"

        def uri(number: int, page_token: str | None = None) -> str:
            params = [*filters, ("PageSize", str(page_size)), ("Page", str(number))]
            return base + "?" + urlencode(params + ([("PageToken", page_token)] if page_token else []))

        more = bool(items) and start + len(items) < len(matching)
        return 200, {
            "end": start + max(len(items), 1) - 1,
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1, "PA" + items[-1].sid) if more else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "recordings": [self.recording_json(r, media_base) for r in items],
            "start": start,
            "uri": uri(page, token or None),
        }

    def call_json(self, held: _HeldCall) -> dict[str, object]:
        path = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{held.sid}"
        ended = held.end_time is not None
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": _rfc2822(held.date_created),
            "date_updated": _rfc2822(held.end_time or held.date_created),
            "direction": held.direction,
            "duration": str(held.duration_s or 0) if ended else None,
            "end_time": _rfc2822(held.end_time) if held.end_time is not None else None,
            "forwarded_from": None,
            "from": held.from_,
            "from_formatted": held.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": held.sid,
            "start_time": None if held.status == "queued" else _rfc2822(held.date_created),
            "status": held.status,
            "subresource_uris": {
                "notifications": path + "/Notifications.json",
                "recordings": path + "/Recordings.json",
            },
            "to": held.to,
            "to_formatted": held.to,
            "trunk_sid": None,
            "uri": path + ".json",
        }


class _MediaHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    media: MediaServer


class _MediaHandler(BaseHTTPRequestHandler):
    server: _MediaHTTPServer
    server_version = "Twilio.MediaSimulator/1.0"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def do_DELETE(self) -> None:
        media = self.server.media
        path = self.path.split("?", 1)[0]
        media._count(path, "DELETE")
        if not self._authorized():
            return self._unauthorized()
        m = _MEDIA_PATH_RE.fullmatch(path)
        if m is None or m["account"] != media.account_sid or m["ext"] not in (None, ".json"):
            return self._not_found(path)
        if media._misbehave(self, "DELETE", m["sid"], None, send_body=True):
            return
        if not media.delete(m["sid"]):
            return self._not_found(path)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        """Twilio's REST create endpoints: `POST /2010-04-01/Accounts/{AccountSid}/{Resource}.json`."""
        media = self.server.media
        path = self.path.split("?", 1)[0]
        media._count(path, "POST")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
        if not self._authorized():
            return self._unauthorized()
        m = _REST_CREATE_RE.fullmatch(path)
        create = media._creators.get(m["resource"]) if m is not None else None
        if m is None or m["account"] != media.account_sid or create is None:
            return self._not_found(path)
        if media._misbehave(self, "POST", m["resource"], None, send_body=True):
            return
        # A repeated parameter (Calls' StatusCallbackEvent) arrives as its values joined by spaces.
        form = {k: " ".join(v) for k, v in parse_qs(raw, keep_blank_values=True).items()}
        status, body = create(form)
        self._json(status, json.dumps(body, ensure_ascii=False))

    def _handle(self, *, send_body: bool) -> None:
        media = self.server.media
        path, _, query = self.path.partition("?")
        media._count(path, self.command)
        if not self._authorized():
            return self._unauthorized(send_body=send_body)
        read = media._read(path, query)
        if read is not None:
            key, status, body = read
            if status == 401:
                return self._unauthorized(send_body=send_body)
            if media._misbehave(self, "GET", key, None, send_body=send_body):
                return
            return self._json(status, json.dumps(body, ensure_ascii=False), send_body=send_body)
        m = _MEDIA_PATH_RE.fullmatch(path)
        wav = media._get(m["sid"]) if m is not None else None
        if m is None or m["account"] != media.account_sid or m["ext"] not in (None, ".wav") or wav is None:
            return self._not_found(path, send_body=send_body)
        if media._misbehave(self, "GET", m["sid"], wav, send_body=send_body):
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/x-wav")
        self.send_header("Content-Length", str(len(wav)))
        self.end_headers()
        if send_body:
            try:
                self.wfile.write(wav)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a "slow" fault outlasted its timeout)

    def _authorized(self) -> bool:
        media = self.server.media
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        expected_user = media.account_sid.encode()
        expected_password = media.auth_token.encode()
        user_ok = hmac.compare_digest(user.encode(), expected_user)
        password_ok = hmac.compare_digest(password.encode(), expected_password)
        return bool(sep) and user_ok and password_ok

    def _json(
        self, status: int, body: str, *, send_body: bool = True, extra: Mapping[str, str] | None = None
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def _unauthorized(self, *, send_body: bool = True) -> None:
        self._json(
            401,
            '{"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",'
            ' "status": 401}',
            send_body=send_body,
            extra={"WWW-Authenticate": 'Basic realm="Twilio API"'},
        )

    def _not_found(self, path: str, *, send_body: bool = True) -> None:
        _, body = _twilio_error(404, 20404, f"The requested resource {path} was not found")
        self._json(404, json.dumps(body), send_body=send_body)


class MediaServer:
    """Serves recordings like Twilio's media with "enforce HTTP auth on media" on.

    ``GET /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}[.wav]`` with basic auth
    (account SID, auth token) returns the WAV (``audio/x-wav``); missing or wrong credentials get 401 with
    ``WWW-Authenticate: Basic realm="Twilio API"``; unknown SIDs, other accounts and ``.mp3`` get 404.
    ``DELETE`` on the same path (or ``.json``) removes a recording (204), like the REST API.
    ``POST …/Messages.json`` (To, From or MessagingServiceSid, Body; basic auth) sends an SMS: 201 with
    Twilio's message JSON (``SM…`` sid), or Twilio's 400 error (21604/21211 To, 21603/21212 From, 21701
    Messaging Service, 21602/21617 Body); :meth:`messages` lists what was sent.
    ``POST …/Calls.json`` places an outbound call and plays it against the app the way Twilio does
    (``calls``, an :class:`OutboundCalls`: its status callbacks, TwiML, ``<Dial>`` legs and AMD).
    ``GET …/Recordings.json`` lists what :meth:`register` holds (every recording a simulated call made,
    ``absent`` ones too, until deleted), filtered by ``CallSid`` and ``DateCreated`` (``=``, ``<=``,
    ``>=``), newest first, ``PageSize`` (default 50) to a page with ``next_page_uri``.
    ``GET …/Recordings/{Sid}.json`` is one recording. ``GET …/Calls/{CallSid}.json`` is a call the
    simulator plays: ``in-progress`` while it runs, its final status, ``duration`` and ``end_time`` from
    the moment the caller hangs up. These reads need the credentials like the media (401 otherwise, and
    for another account's path); unknown SIDs get Twilio's 404 JSON (code 20404).

    For tests, :meth:`inject` makes the next requests for one recording misbehave the ways Twilio's media
    and the network do (errors, slowness, cut-off or non-audio bodies); without it nothing changes. The
    reads take faults too: ``inject("Recordings", …)`` for the list, ``inject(call_sid, …)`` for a call,
    ``inject(recording_sid + ".json", …)`` for one recording's JSON.
    :meth:`requests` lists what was asked, in order, and ``observer`` (if set) is called with the method and
    path of each request before it is answered, in the server's thread.
    """

    def __init__(self, account_sid: str, auth_token: str, *, host: str = "127.0.0.1") -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._host = host
        self._lock = threading.Lock()
        self._held = _Holdings(account_sid)
        self._counts: dict[str, int] = {}
        self._log: list[tuple[str, str]] = []
        self._faults: dict[tuple[str, str], list[_Fault]] = {}
        self._messages: list[SentMessage] = []
        # POST …/{Resource}.json handlers: form -> (status, JSON body).
        self._creators: dict[str, Callable[[dict[str, str]], tuple[int, dict[str, object]]]] = {
            "Messages": self._create_message,
        }
        # Calls.json and the outbound calls it places (the call-back bridge).
        self.calls = OutboundCalls(self)
        self._creators["Calls"] = self.calls.create
        self._closing = threading.Event()
        self.observer: Callable[[str, str], None] | None = None
        self._server: _MediaHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> MediaServer:
        if self._server is not None:
            return self
        server = _MediaHTTPServer((self._host, 0), _MediaHandler)
        server.media = self
        self._closing.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="twilio-media-sim", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self._closing.set()  # a request held back by a "slow" or "stall" fault gives up at once
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # URLs and content
    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("MediaServer is not running; use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def recording_url(self, recording_sid: str) -> str:
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{recording_sid}"

    def rest_url(self, resource: str) -> str:
        """``Recordings`` -> ``{base}/2010-04-01/Accounts/{AccountSid}/Recordings.json`` (``Calls/CA…``)."""
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/{resource}.json"

    def register(
        self,
        recording_sid: str,
        wav_bytes: bytes | None,
        *,
        call_sid: str | None = None,
        duration_s: int | None = None,
        status: str = "completed",
        date_created: datetime | None = None,
    ) -> str:
        """Store a recording; returns its RecordingUrl (no extension, like Twilio).

        It is listed by ``GET …/Recordings.json`` from now on. ``wav_bytes=None`` holds one without media
        (status ``absent``: Twilio made the recording but heard nothing). ``duration_s`` defaults to the
        WAV's length, ``date_created`` to now (pass an earlier time to test the date filters).
        """
        self._held.add_recording(
            recording_sid,
            bytes(wav_bytes) if wav_bytes is not None else None,
            call_sid=call_sid,
            duration_s=duration_s,
            status=status,
            date_created=date_created,
        )
        return self.recording_url(recording_sid)

    def delete(self, recording_sid: str) -> bool:
        with self._held.lock:
            return self._held.recordings.pop(recording_sid, None) is not None

    def has(self, recording_sid: str) -> bool:
        """Whether the recording's media can be fetched."""
        return self._get(recording_sid) is not None

    def _get(self, recording_sid: str) -> bytes | None:
        with self._held.lock:
            held = self._held.recordings.get(recording_sid)
            return held.wav if held is not None else None

    def recording_resource(self, recording_sid: str) -> dict[str, object] | None:
        """The recording as ``GET …/Recordings/{Sid}.json`` answers it; None when Twilio holds none."""
        with self._held.lock:
            held = self._held.recordings.get(recording_sid)
        return self._held.recording_json(held, self.base_url) if held is not None else None

    # calls (what GET …/Calls/{CallSid}.json answers)
    def call_started(
        self,
        call_sid: str,
        *,
        from_number: str,
        to_number: str,
        direction: str = "inbound",
        status: str = "in-progress",
    ) -> None:
        """A call begins (the simulator calls this for each call it plays)."""
        held = _HeldCall(call_sid, from_number, to_number, direction, status, datetime.now(UTC))
        with self._held.lock:
            self._held.calls[call_sid] = held

    def call_updated(self, call_sid: str, status: str, *, duration_s: int | None = None) -> None:
        """A call's status changes; a final one (completed, busy, …) ends it, once."""
        with self._held.lock:
            held = self._held.calls.get(call_sid)
            if held is None or held.end_time is not None:
                return
            held.status = status
            if status in CALL_END_STATUSES:
                held.end_time = datetime.now(UTC)
                held.duration_s = duration_s if duration_s is not None else 0

    def call_resource(self, call_sid: str) -> dict[str, object] | None:
        """The call as ``GET …/Calls/{CallSid}.json`` answers it; None for a call Twilio never had."""
        with self._held.lock:
            held = self._held.calls.get(call_sid)
            return self._held.call_json(held) if held is not None else None

    def _read(self, path: str, query: str) -> tuple[str, int, dict[str, object]] | None:
        """A REST read (fault key, status, JSON body), or None when `path` is not one (media, say)."""
        form = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if (m := _RECORDING_LIST_RE.fullmatch(path)) is not None:
            key = "Recordings"
            found: tuple[int, dict[str, object]] | None = self._held.recordings_page(form, self.base_url)
        elif (m := _CALL_PATH_RE.fullmatch(path)) is not None:
            key = m["sid"]
            body = self.call_resource(m["sid"])
            found = (200, body) if body is not None else None
        elif (m := _MEDIA_PATH_RE.fullmatch(path)) is not None and m["ext"] == ".json":
            key = m["sid"] + ".json"
            body = self.recording_resource(m["sid"])
            found = (200, body) if body is not None else None
        else:
            return None
        # Credentials of one account on another's path: Twilio's 20003, not a 404 (docs, error 20003).
        if m["account"] != self.account_sid:
            return key, *_twilio_error(401, 20003, "Authenticate")
        if found is None:
            return key, *_twilio_error(404, 20404, f"The requested resource {path} was not found")
        return key, *found

    # fault injection (tests)
    def inject(
        self,
        recording_sid: str,
        fault: MediaFault,
        *,
        times: int | None = 1,
        delay_s: float = 2.0,
        method: Literal["GET", "DELETE", "POST"] = "GET",
    ) -> None:
        """Make the next `times` authorised `method` requests for a recording fail with `fault`, then serve.

        For ``POST`` the key is the resource instead of a recording SID ("Messages"; see inject_messages).

        Faults queue in the order injected; ``times=None`` repeats one for good (until :meth:`clear_faults`).
        ``"http500"``, ``"http503"``, ``"http404"``: Twilio's JSON error with that status.
        ``"slow"``: answer normally after `delay_s` (a client whose read timeout is shorter gives up).
        ``"stall"``: send the headers and half the body, then hold the connection for `delay_s`.
        ``"truncated"``: announce the full Content-Length, send half the body, close the connection.
        ``"html"``: 200 with an HTML page instead of audio (a proxy's or a portal's answer).
        Credentials are checked before any fault: wrong ones always get 401.
        """
        if fault not in _MEDIA_FAULTS:
            raise ValueError(f"unknown media fault {fault!r}; one of {', '.join(sorted(_MEDIA_FAULTS))}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for every request)")
        with self._lock:
            self._faults.setdefault((method, recording_sid), []).append(_Fault(fault, times, delay_s))

    def inject_messages(self, fault: MediaFault, *, times: int | None = 1, delay_s: float = 2.0) -> None:
        """Make the next `times` SMS requests fail with `fault` ("http500", "http503", "slow", …)."""
        self.inject("Messages", fault, times=times, delay_s=delay_s, method="POST")

    # SMS (Twilio's Messages resource)
    def messages(self) -> list[SentMessage]:
        with self._lock:
            return list(self._messages)

    def _create_message(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        to, from_ = form.get("To", ""), form.get("From", "")
        service, body = form.get("MessagingServiceSid", ""), form.get("Body", "")
        # Twilio's messages quote the numbers: a client that stores them stores personal data.
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not _E164_RE.fullmatch(to):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not from_ and not service:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if from_ and not _E164_RE.fullmatch(from_):
            return _twilio_error(400, 21212, f"The 'From' number {from_} is not a valid phone number.")
        if service and not _MESSAGING_SERVICE_RE.fullmatch(service):
            return _twilio_error(400, 21701, f"The Messaging Service Sid {service} is invalid.")
        if not body.strip():
            return _twilio_error(400, 21602, "Message body is required.")
        if len(body) > SMS_BODY_MAX:
            return _twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        sid = _new_sid("SM")
        with self._lock:
            self._messages.append(SentMessage(sid, to, from_ or None, service or None, body))
        now = _rfc2822_now()
        ucs2 = any(ord(ch) > 0x7F for ch in body)
        per_segment = (67 if ucs2 else 153) if len(body) > (70 if ucs2 else 160) else len(body) or 1
        return 201, {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_ or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(max(1, math.ceil(len(body) / per_segment))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }

    def clear_faults(self, recording_sid: str | None = None) -> None:
        with self._lock:
            if recording_sid is None:
                self._faults.clear()
            else:
                for key in [k for k in self._faults if k[1] == recording_sid]:
                    del self._faults[key]

    def _take_fault(self, method: str, recording_sid: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get((method, recording_sid))
            if not queue:
                return None
            fault = queue[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    queue.pop(0)
            return fault

    def _misbehave(
        self, handler: _MediaHandler, method: str, recording_sid: str, wav: bytes | None, *, send_body: bool
    ) -> bool:
        """Answer with the next injected fault for this request, if any; True when it was answered."""
        fault = self._take_fault(method, recording_sid)
        if fault is None:
            return False
        try:
            if fault.kind in ("http500", "http503", "http404"):
                status = int(fault.kind[4:])
                message = {500: "Internal Server Error", 503: "Service Unavailable", 404: "Not Found"}[status]
                code = 20404 if status == 404 else 20500
                handler._json(
                    status,
                    f'{{"code": {code}, "message": "{message}", "more_info": '
                    f'"https://www.twilio.com/docs/errors/{code}", "status": {status}}}',
                    send_body=send_body,
                    extra={"Retry-After": "1"} if status == 503 else None,
                )
            elif fault.kind == "slow":
                # Late, but then served normally (unless the server is closing meanwhile).
                return self._closing.wait(fault.delay_s)
            elif fault.kind == "html":
                page = b"<!DOCTYPE html><html><body><h1>Temporarily unavailable</h1></body></html>"
                handler.send_response(200)
                handler.send_header("Content-Type", "text/html; charset=utf-8")
                handler.send_header("Content-Length", str(len(page)))
                handler.end_headers()
                if send_body:
                    handler.wfile.write(page)
            elif wav is None:  # "stall" and "truncated" only make sense for a recording's body
                handler.send_response(500)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
            else:
                half = wav[: len(wav) // 2]
                handler.send_response(200)
                handler.send_header("Content-Type", "audio/x-wav")
                handler.send_header("Content-Length", str(len(wav)))
                handler.end_headers()
                if send_body:
                    handler.wfile.write(half)
                    handler.wfile.flush()
                    if fault.kind == "stall":
                        self._closing.wait(fault.delay_s)
                        handler.wfile.write(wav[len(half) :])
                handler.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up first, as a timed-out client does
        return True

    # request accounting
    def _count(self, path: str, method: str = "GET") -> None:
        observer = self.observer
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1
            self._log.append((method, path))
        if observer is not None:
            observer(method, path)

    def requests(self, method: str | None = None) -> list[tuple[str, str]]:
        """(method, path) of every request received, in order; only `method`'s when given."""
        with self._lock:
            return [entry for entry in self._log if method is None or entry[0] == method]

    def request_count(self, path_or_url: str) -> int:
        """Requests received for a path (a full URL is accepted too; its query is ignored)."""
        path = urlsplit(path_or_url).path if "://" in path_or_url else path_or_url.split("?", 1)[0]
        with self._lock:
            return self._counts.get(path, 0)

    @property
    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


# --------------------------------------------------------------------------------------------------
# The call engine
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Document:
    url: str  # public URL the document was fetched from (relative URLs resolve against it)
    root: ET.Element


class _FetchError(Exception):
    def __init__(
        self,
        code: int | None,
        message: str,
        *,
        url: str,
        status: int | None = None,
        excerpt: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.url = url
        self.status = status
        self.excerpt = excerpt


class _CallEnded(Exception):
    def __init__(self, ended_by: EndedBy, call_status: str = "completed") -> None:
        super().__init__(ended_by)
        self.ended_by: EndedBy = ended_by
        self.call_status = call_status


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _with_query(url: str, params: Mapping[str, str]) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(list(params.items()))


def _int_attr(el: ET.Element, name: str, default: int) -> int:
    value = el.get(name)
    if value is None or not value.strip():
        return default
    try:
        return int(value.strip())
    except ValueError:
        return default


def _new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _rfc2822_now() -> str:
    return _rfc2822(datetime.now(UTC))


def _twilio_error(status: int, code: int, message: str) -> tuple[int, dict[str, object]]:
    """Twilio's JSON error body."""
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@dataclass(frozen=True)
class _RecordVerb:
    """One ``<Record>``'s attributes, with Twilio's defaults."""

    action: str
    method: str
    max_length: int
    timeout: int
    finish: str
    beep: bool
    callback_url: str | None
    callback_method: str
    callback_events: frozenset[str]

    @classmethod
    def of(cls, doc: _Document, el: ET.Element) -> _RecordVerb:
        rsc = el.get("recordingStatusCallback")
        events = (el.get("recordingStatusCallbackEvent") or "completed").strip()
        return cls(
            action=urljoin(doc.url, el.get("action") or "") if el.get("action") else doc.url,
            method=(el.get("method") or "POST").upper(),
            max_length=_int_attr(el, "maxLength", 3600) or 3600,
            timeout=_int_attr(el, "timeout", 5),
            finish=el.get("finishOnKey", "1234567890*#"),
            beep=(el.get("playBeep") or "true").lower() != "false",
            callback_url=urljoin(doc.url, rsc) if rsc else None,
            callback_method=(el.get("recordingStatusCallbackMethod") or "POST").upper(),
            callback_events=frozenset(re.split(r"[\s,]+", events)),
        )

    @property
    def prompt(self) -> str:
        return f"record (maxLength={self.max_length}s, finishOnKey={self.finish!r}, timeout={self.timeout}s)"


def _record_digits(act: CallerAction, verb: _RecordVerb) -> str | None:
    """The action's ``Digits``: what ended the recording (None: maxLength or the silence timeout)."""
    if act.hangup_during:
        return "hangup"
    if act.seconds > verb.max_length:
        return None
    if act.finish_key in verb.finish:
        return act.finish_key
    # The key does not end this recording: the silence timeout does, or the caller's hang-up.
    return "hangup" if act.hangup_after else None


class _Call:
    def __init__(
        self,
        config: SimulatorConfig,
        script: CallScript,
        media: MediaServer,
        session: requests.Session,
        on_event: Callable[[CallEvent], None] | None,
        recording_wav: bytes | None,
    ) -> None:
        self.config = config
        self.cursor = _ScriptCursor(script)
        self.media = media
        self.session = session
        self.on_event = on_event
        self.recording_wav = recording_wav if recording_wav is not None else config.recording_wav
        self.validator = RequestValidator(config.auth_token)
        self.call_sid = _new_sid("CA")
        self.result = CallResult(call_sid=self.call_sid)
        self.call_status = config.first_call_status
        self.answered = False
        self.document_requests = 0
        self.clock_s = 0.0
        self._public_origin = _origin(config.public_base)
        self._public_path = urlsplit(config.public_base).path.rstrip("/")
        self._connect_base = config.connect_base.rstrip("/")
        # The end-of-call requests run on their own threads (concurrent delivery): each gets its own
        # session and collects its events, which the call's thread emits once they are all answered.
        self._local = threading.local()
        # The status callback goes out once per call: at the end of run(), unless the end-of-call
        # delivery took it over (and sent it, or lost it as the hang-up order said).
        self.status_handled = False

    # ---- plumbing ----
    def emit(self, event: CallEvent) -> None:
        buffer: list[CallEvent] | None = getattr(self._local, "events", None)
        if buffer is not None:
            buffer.append(event)
            return
        self.result.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def http(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        return session if session is not None else self.session

    def standard_params(self) -> dict[str, str]:
        c = self.config
        return {
            "AccountSid": c.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.call_sid,
            "CallStatus": self.call_status,
            "Called": c.to_number,
            "Caller": c.from_number,
            "Direction": "inbound",
            "From": c.from_number,
            "To": c.to_number,
            "FromCountry": c.from_country,
            "ToCountry": c.to_country,
            "CallerCountry": c.from_country,
            "CalledCountry": c.to_country,
        }

    def is_public(self, url: str) -> bool:
        if _origin(url) != self._public_origin:
            return False
        path = urlsplit(url).path
        return not self._public_path or path == self._public_path or path.startswith(self._public_path + "/")

    def to_connect(self, public_url: str) -> str:
        parts = urlsplit(public_url)
        rest = parts.path[len(self._public_path) :] or "/"
        return self._connect_base + rest + (f"?{parts.query}" if parts.query else "")

    def send(
        self, method: str, public_url: str, params: Mapping[str, str], purpose: str
    ) -> tuple[requests.Response, str]:
        """Signed request to a public URL (mapped onto connect_base); follows HTTP redirects.

        Returns the response (body read) and the public URL that finally answered.
        """
        method = method.upper()
        url = urlunsplit(urlsplit(public_url)._replace(fragment=""))
        for _hop in range(MAX_HTTP_REDIRECTS + 1):
            if not self.is_public(url):
                raise _FetchError(
                    11205,
                    f"{url} is not under the public base {self.config.public_base}: Twilio cannot reach it",
                    url=url,
                )
            if method == "GET":
                signed_url, body, sign_params = _with_query(url, params), None, {}
            else:
                signed_url, body, sign_params = url, dict(params), dict(params)
            headers = {
                "X-Twilio-Signature": self.validator.compute_signature(signed_url, sign_params),
                "User-Agent": "TwilioProxy/1.1",
                "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            }
            started = time.perf_counter()
            try:
                resp = self.http().request(
                    method,
                    self.to_connect(signed_url),
                    data=body,
                    headers=headers,
                    timeout=self.config.timeout_s,
                    allow_redirects=False,
                )
                _ = resp.content  # read the body inside the timeout window, release the connection
            except requests.Timeout:
                self._request_event(method, signed_url, purpose, None, started, params)
                raise _FetchError(
                    11205, f"no answer within {self.config.timeout_s:g} s", url=signed_url
                ) from None
            except requests.RequestException as exc:
                self._request_event(method, signed_url, purpose, None, started, params)
                raise _FetchError(11205, f"connection failed: {exc}", url=signed_url) from None
            self._request_event(method, signed_url, purpose, resp.status_code, started, params)
            location = resp.headers.get("Location")
            if resp.status_code in (301, 302, 303, 307, 308) and location:
                url = urljoin(signed_url, location)
                if resp.status_code in (301, 302, 303):
                    method = "GET"
                params = {}
                continue
            return resp, signed_url
        raise _FetchError(11215, "too many HTTP redirects", url=url)

    def _request_event(
        self,
        method: str,
        url: str,
        purpose: str,
        status: int | None,
        started: float,
        params: Mapping[str, str],
    ) -> None:
        self.emit(
            CallEvent(
                kind="request",
                method=method,
                url=url,
                purpose=purpose,
                status=status,
                elapsed_ms=(time.perf_counter() - started) * 1000,
                params=dict(params),
            )
        )

    def load(self, public_url: str, method: str, extra: Mapping[str, str], purpose: str) -> _Document:
        """Request TwiML and return the validated document (raises _FetchError / _CallEnded)."""
        if self.document_requests >= self.config.max_requests:
            self.emit(
                CallEvent(
                    kind="error",
                    text=f"loop guard: {self.document_requests} TwiML requests in one call, giving up",
                    url=public_url,
                )
            )
            raise _CallEnded("loop-guard")
        self.document_requests += 1
        params = {**self.standard_params(), **extra}
        resp, url = self.send(method, public_url, params, purpose)
        text = resp.text
        if not 200 <= resp.status_code < 300:
            raise _FetchError(
                11200,
                f"HTTP retrieval failure: the app answered {resp.status_code}",
                url=url,
                status=resp.status_code,
                excerpt=_excerpt(text),
            )
        content_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type == "text/plain":
            root = ET.Element("Response")
            ET.SubElement(root, "Say").text = text
            return _Document(url, root)
        if content_type.startswith("audio/"):
            root = ET.Element("Response")
            play = ET.SubElement(root, "Play")
            play.text = url
            play.set(_NO_FETCH_ATTR, "1")  # already fetched: it is this response
            return _Document(url, root)
        if content_type not in TWIML_CONTENT_TYPES:
            raise _FetchError(
                12300,
                f"Invalid Content-Type {content_type or '(none)'!r}: not TwiML (text/xml, application/xml)",
                url=url,
                status=resp.status_code,
                excerpt=_excerpt(text),
            )
        try:
            root = ET.fromstring(resp.content)  # noqa: S314 - TwiML from the app under test
        except ET.ParseError as exc:
            raise _FetchError(
                12100,
                f"Document parse failure: {exc}",
                url=url,
                status=resp.status_code,
                excerpt=_excerpt(text),
            ) from None
        if root.tag != "Response":
            raise _FetchError(
                12100,
                f"Document parse failure: root element is <{root.tag}>, not <Response>",
                url=url,
                status=resp.status_code,
                excerpt=_excerpt(text),
            )
        problem = _schema_problem(root)
        if problem is not None:
            raise _FetchError(
                12200,
                f"Schema validation: {problem}",
                url=url,
                status=resp.status_code,
                excerpt=_excerpt(text),
            )
        return _Document(url, root)

    def callback(self, public_url: str, method: str, params: Mapping[str, str], purpose: str) -> None:
        """A fire-and-forget callback (status, recording status): failures are warnings, not call errors."""
        try:
            resp, url = self.send(method, public_url, params, purpose)
        except _FetchError as err:
            self.emit(CallEvent(kind="warning", code=err.code, text=f"{purpose}: {err.message}", url=err.url))
            return
        if not 200 <= resp.status_code < 300:
            self.emit(
                CallEvent(
                    kind="warning",
                    code=11200,
                    text=f"{purpose}: the app answered {resp.status_code}",
                    url=url,
                    status=resp.status_code,
                    body_excerpt=_excerpt(resp.text),
                )
            )

    def error_event(self, err: _FetchError) -> None:
        self.emit(
            CallEvent(
                kind="error",
                code=err.code,
                text=err.message,
                url=err.url,
                status=err.status,
                body_excerpt=err.excerpt,
            )
        )

    # ---- the call ----
    def run(self) -> CallResult:
        script_error: ScriptError | None = None
        c = self.config
        self.media.call_started(self.call_sid, from_number=c.from_number, to_number=c.to_number)
        try:
            doc = self.load(self.config.public_url(self.config.voice_path), "POST", {}, "voice")
            while True:
                doc = self.execute(doc)
        except _FetchError as err:
            self.error_event(err)
            self.result.ended_by = "error"
        except _CallEnded as end:
            self.result.ended_by = end.ended_by
            self.result.call_status = end.call_status
        except ScriptError as exc:
            script_error = exc
            self.emit(CallEvent(kind="hangup", text=f"caller hangs up: script error: {exc}"))
            self.result.ended_by = "caller-hangup"
        finally:
            params = self.end_call()
            if not self.status_handled:
                self.send_status_callback(params)
        if script_error is not None:
            script_error.result = self.result
            raise script_error
        return self.result

    def end_call(self) -> dict[str, str]:
        """The call is over (the Calls resource says so from now on); the status callback's parameters."""
        self.result.duration_s = 0 if not self.answered else max(1, math.ceil(self.clock_s))
        self.call_status = self.result.call_status
        self.media.call_updated(self.call_sid, self.call_status, duration_s=self.result.duration_s)
        return {
            **self.standard_params(),
            "CallDuration": str(self.result.duration_s),
            "Timestamp": _rfc2822_now(),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
        }

    def send_status_callback(self, params: Mapping[str, str]) -> None:
        self.status_handled = True
        self.callback(self.config.public_url(self.config.status_path), "POST", params, "status-callback")

    def execute(self, doc: _Document) -> _Document:
        for el in doc.root:
            if el.tag != "Reject":
                self.answer()
            nxt = self.verb(doc, el)
            if nxt is not None:
                return nxt
        self.emit(CallEvent(kind="hangup", text="end of document"))
        raise _CallEnded("end-of-document")

    def answer(self) -> None:
        if not self.answered:
            self.answered = True
            self.call_status = "in-progress"

    def caller_hangs_up(self, why: str) -> _CallEnded:
        self.emit(CallEvent(kind="hangup", text=f"caller hangs up: {why}"))
        self.call_status = "completed"
        return _CallEnded("caller-hangup")

    def verb(self, doc: _Document, el: ET.Element) -> _Document | None:
        tag = el.tag
        if tag in ("Say", "Play", "Pause"):
            self.speak(doc, el)
            return None
        if tag == "Gather":
            return self.gather(doc, el)
        if tag == "Record":
            return self.record(doc, el)
        if tag == "Dial":
            return self.dial(doc, el)
        if tag == "Redirect":
            url = urljoin(doc.url, (el.text or "").strip())
            method = (el.get("method") or "POST").upper()
            self.emit(CallEvent(kind="redirect", url=url, method=method))
            return self.load(url, method, {}, "redirect")
        if tag == "Hangup":
            self.emit(CallEvent(kind="hangup", text="<Hangup>"))
            raise _CallEnded("hangup-verb")
        if tag == "Reject":
            reason = el.get("reason") or "rejected"
            self.emit(CallEvent(kind="reject", text=reason))
            if self.answered:
                raise _CallEnded("hangup-verb")
            raise _CallEnded("hangup-verb", "busy" if reason == "busy" else "no-answer")
        if tag in _SKIPPED_VERBS:
            self.emit(CallEvent(kind="warning", text=f"<{tag}> is not simulated; skipped"))
            return None
        raise _FetchError(None, f"<{tag}> is a Twilio verb the simulator does not implement", url=doc.url)

    def speak(self, doc: _Document, el: ET.Element) -> None:
        loop = max(1, _int_attr(el, "loop", 1))
        if el.tag == "Say":
            text = "".join(el.itertext()).strip()
            language = el.get("language") or "en-US"
            voice = el.get("voice")
            if language.lower().startswith("th") and not (voice or "").startswith("Google."):
                self.emit(
                    CallEvent(
                        kind="warning",
                        text=f"<Say language={language!r}> with voice {voice or '(default)'!r}: only Google "
                        "voices speak Thai",
                    )
                )
            self.emit(CallEvent(kind="say", text=text, language=language, voice=voice))
            self.clock_s += loop * max(1.0, len(text) / 12)
        elif el.tag == "Play":
            digits = el.get("digits")
            url = urljoin(doc.url, (el.text or "").strip()) if (el.text or "").strip() else None
            self.emit(CallEvent(kind="play", url=url, text=digits or ""))
            self.clock_s += loop * 3.0
            fetch = self.config.fetch_media and el.get(_NO_FETCH_ATTR) is None
            if url is not None and fetch and self.is_public(url):
                self.check_media(url)
        else:  # Pause
            length = _int_attr(el, "length", 1)
            self.emit(CallEvent(kind="pause", seconds=float(length)))
            self.clock_s += length

    def check_media(self, url: str) -> None:
        try:
            resp, _ = self.send("GET", url, {}, "play-media")
        except _FetchError as err:
            self.emit(CallEvent(kind="warning", code=err.code, text=f"<Play> {err.message}", url=url))
            return
        ctype = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if not 200 <= resp.status_code < 300:
            self.emit(
                CallEvent(
                    kind="warning",
                    code=11200,
                    text="<Play> media not found",
                    url=url,
                    status=resp.status_code,
                )
            )
        elif not ctype.startswith("audio/"):
            self.emit(
                CallEvent(
                    kind="warning", code=13420, text=f"<Play> content type {ctype!r} is not audio", url=url
                )
            )

    # ---- Gather ----
    def gather(self, doc: _Document, el: ET.Element) -> _Document | None:
        for child in el:
            self.speak(doc, child)
        modes = set((el.get("input") or "dtmf").lower().split())
        finish = el.get("finishOnKey", "#")
        num_digits = _int_attr(el, "numDigits", 0)
        timeout = _int_attr(el, "timeout", 5)
        action = urljoin(doc.url, el.get("action") or "") if el.get("action") else doc.url
        method = (el.get("method") or "POST").upper()
        on_empty = (el.get("actionOnEmptyResult") or "false").lower() == "true"
        asks = []
        if "dtmf" in modes:
            asks.append(
                f"digits (numDigits={num_digits or 'any'}, finishOnKey={finish!r}, timeout={timeout}s)"
            )
        if "speech" in modes:
            language = el.get("language") or "en-US"
            hints = el.get("hints")
            asks.append(f"speech (language={language}{', hints=' + hints if hints else ''})")
        prompt = " or ".join(asks) or f"input {el.get('input')!r}"
        self.emit(CallEvent(kind="gather-prompt", text=prompt, url=action, method=method))
        accepts: frozenset[ActionKind] = frozenset({"digits", "speech", "silence", "hangup"})
        act = self.cursor.take("Gather", accepts, prompt)
        if act is None:
            raise self.caller_hangs_up("the script ran out at a <Gather>")
        if act.kind == "hangup":
            self.emit(CallEvent(kind="input", text=act.raw, outcome="hangup"))
            raise self.caller_hangs_up("during <Gather>")
        params: dict[str, str] | None = None
        outcome = "no input"
        if act.kind == "digits":
            if "dtmf" in modes:
                digits, how = _collect_digits(act.digits, finish, num_digits)
                if digits:
                    params = {"Digits": digits}
                    outcome = f"Digits={digits} ({how})"
                else:
                    outcome = f"no digits ({how})"
            else:
                outcome = "keys ignored: the <Gather> does not listen for dtmf"
            self.clock_s += 1 + len(act.digits) * 0.5
        elif act.kind == "speech":
            if "speech" in modes:
                params = {"SpeechResult": act.speech, "Confidence": SPEECH_CONFIDENCE}
                outcome = f"SpeechResult={act.speech}"
            else:
                outcome = "speech ignored: the <Gather> does not listen for speech"
            self.clock_s += 2
        else:
            self.clock_s += timeout
        self.emit(CallEvent(kind="input", text=act.raw, outcome=outcome))
        if params is None:
            if not on_empty:
                return None
            params = {"Digits": ""} if "dtmf" in modes else {}
        return self.load(action, method, params, "gather-action")

    # ---- Record ----
    def record(self, doc: _Document, el: ET.Element) -> _Document | None:
        verb = _RecordVerb.of(doc, el)
        accepts: frozenset[ActionKind] = frozenset({"record", "silence", "hangup"})
        act = self.cursor.take("Record", accepts, verb.prompt)
        if act is None:
            raise self.caller_hangs_up("the script ran out at a <Record>")
        sid = _new_sid("RE")
        started = _rfc2822_now()
        if act.kind != "record" or act.seconds == 0:
            return self.empty_recording(verb, act, sid, started)

        duration = min(act.seconds, verb.max_length)
        digits = _record_digits(act, verb)
        wav = self.recording_wav if self.recording_wav is not None else generate_wav(duration)
        measured = wav_duration(wav)
        if self.recording_wav is not None and measured is not None:
            duration = round(measured)
        recording_url = self.media.register(sid, wav, call_sid=self.call_sid, duration_s=duration)
        self.result.recordings.append(sid)
        self.recording_status(verb, sid, started, "in-progress", {"RecordingUrl": recording_url})
        self.emit(
            CallEvent(
                kind="record",
                text=act.raw,
                url=recording_url,
                outcome=f"RecordingSid={sid} Digits={digits}{' (beep)' if verb.beep else ''}",
                seconds=float(duration),
            )
        )
        self.clock_s += duration + (0 if digits else verb.timeout)
        params = {"RecordingUrl": recording_url, "RecordingSid": sid, "RecordingDuration": str(duration)}
        if digits is not None:
            params["Digits"] = digits
        completed = {"RecordingUrl": recording_url, "RecordingDuration": str(duration)}
        if act.hangup_during or act.hangup_after:
            recording = self.recording_status_request(verb, sid, started, "completed", completed)
            raise self.hang_up_recording(verb, digits, params, recording)
        try:
            nxt = self.load(verb.action, verb.method, params, "record-action")
        except _FetchError as err:
            self.error_event(err)
            self.recording_status(verb, sid, started, "completed", completed)
            raise _CallEnded("error") from None
        except _CallEnded:
            self.recording_status(verb, sid, started, "completed", completed)
            raise
        self.recording_status(verb, sid, started, "completed", completed)
        return nxt

    def empty_recording(
        self, verb: _RecordVerb, act: CallerAction, sid: str, started: str
    ) -> _Document | None:
        """Nothing recorded: Twilio skips the action and goes on with the next verb (if the caller stayed)."""
        self.emit(
            CallEvent(kind="record", text=act.raw, outcome="empty recording: action not requested", seconds=0)
        )
        self.clock_s += verb.timeout
        self.media.register(sid, None, call_sid=self.call_sid, duration_s=0, status="absent")
        absent = self.recording_status_request(
            verb, sid, started, "absent", {"RecordingDuration": "0", "ErrorCode": "16101"}
        )
        if act.kind == "hangup" or act.hangup_during or act.hangup_after:
            self.caller_hangs_up("at the <Record> beep")
            raise self.finish_after_hangup({"recording": absent})
        if absent is not None:
            absent()
        return None

    def recording_status_request(
        self, verb: _RecordVerb, sid: str, started: str, status: str, extra: Mapping[str, str]
    ) -> Callable[[], None] | None:
        """The recording status callback for `status`, to send; None when the TwiML did not ask for it."""
        url = verb.callback_url
        if url is None or status not in verb.callback_events:
            return None
        params = {
            "AccountSid": self.config.account_sid,
            "CallSid": self.call_sid,
            "RecordingSid": sid,
            "RecordingStatus": status,
            "RecordingChannels": "1",
            "RecordingSource": "RecordVerb",
            "RecordingStartTime": started,
            **extra,
        }
        return lambda: self.callback(url, verb.callback_method, params, "recording-status")

    def recording_status(
        self, verb: _RecordVerb, sid: str, started: str, status: str, extra: Mapping[str, str]
    ) -> None:
        send = self.recording_status_request(verb, sid, started, status, extra)
        if send is not None:
            send()

    def hang_up_recording(
        self,
        verb: _RecordVerb,
        digits: str | None,
        params: Mapping[str, str],
        recording: Callable[[], None] | None,
    ) -> _CallEnded:
        """The caller hung up during the recording (Digits=hangup) or right after the key that ended it."""
        if digits == "hangup":
            self.emit(CallEvent(kind="hangup", text="caller hangs up during <Record>"))
        else:
            ended = f"pressing {digits!r}" if digits else "the recording ended"
            self.emit(CallEvent(kind="hangup", text=f"caller hangs up at once after {ended}"))
        # A key went in while the call was still up; only Digits=hangup is sent after the caller left.
        action_params = {**params, "CallStatus": "completed" if digits == "hangup" else "in-progress"}

        def action() -> None:
            try:
                self.load(verb.action, verb.method, action_params, "record-action")  # its TwiML is not played
            except _FetchError as err:
                self.emit(
                    CallEvent(kind="warning", code=err.code, text=err.message, url=err.url, status=err.status)
                )
            except _CallEnded as end:
                self.emit(CallEvent(kind="warning", text=f"record-action not sent: {end.ended_by}"))

        return self.finish_after_hangup({"action": action, "recording": recording})

    def finish_after_hangup(self, pending: Mapping[HangupRequest, Callable[[], None] | None]) -> _CallEnded:
        """The caller hung up with a recording outstanding: the end-of-call requests go out as
        ``config.hangup_order`` says, the call status callback among them."""
        self.call_status = self.result.call_status = "completed"
        status_params = self.end_call()
        self.status_handled = True
        sends = {name: send for name, send in pending.items() if send is not None}
        status_url = self.config.public_url(self.config.status_path)
        sends["status"] = lambda: self.callback(status_url, "POST", status_params, "status-callback")
        _EndOfCall(self, self.config.hangup_order, sends).deliver()
        return _CallEnded("caller-hangup")

    @contextmanager
    def captured(self, events: list[CallEvent], session: requests.Session | None) -> Iterator[None]:
        """In this thread, collect events in `events` (not the result) and send through `session`."""
        self._local.events, self._local.session = events, session
        try:
            yield
        finally:
            self._local.events = self._local.session = None

    # ---- Dial ----
    def dial(self, doc: _Document, el: ET.Element) -> _Document | None:
        targets = [(c.text or "").strip() for c in el if c.tag in _DIAL_CHILDREN]
        if (el.text or "").strip():
            targets.insert(0, (el.text or "").strip())
        action = urljoin(doc.url, el.get("action") or "") if el.get("action") else None
        method = (el.get("method") or "POST").upper()
        timeout = _int_attr(el, "timeout", 30)
        prompt = f"dial outcome for {', '.join(targets) or '(nobody)'} [completed]"
        upcoming = self.cursor.peek()
        act: CallerAction | None = None
        if upcoming is None or upcoming.kind in ("dial", "hangup"):
            act = self.cursor.take("Dial", frozenset({"dial", "hangup"}), prompt)
        if act is None:
            act = CallerAction(kind="dial", raw="(default)", seconds=DEFAULT_DIAL_SECONDS)
        caller_hung_up = act.kind == "hangup"
        status = "completed" if caller_hung_up else act.dial_status
        duration = act.seconds if status == "completed" else 0
        self.emit(
            CallEvent(
                kind="dial",
                text=", ".join(targets),
                outcome=status,
                seconds=float(duration),
                url=action,
                method=method if action else None,
            )
        )
        self.clock_s += duration if status == "completed" else (timeout if status == "no-answer" else 1)
        params = {"DialCallStatus": status, "DialCallSid": _new_sid("CA"), "DialCallDuration": str(duration)}
        if caller_hung_up:
            self.call_status = "completed"
            self.emit(CallEvent(kind="hangup", text="caller hangs up during <Dial>"))
            if action is not None:
                try:
                    self.load(action, method, params, "dial-action")
                except _FetchError as err:
                    self.emit(CallEvent(kind="warning", code=err.code, text=err.message, url=err.url))
            raise _CallEnded("caller-hangup")
        if action is None:
            return None
        return self.load(action, method, params, "dial-action")


def _collect_digits(keys: str, finish: str, num_digits: int) -> tuple[str, str]:
    collected: list[str] = []
    for key in keys:
        if finish and key in finish:
            return "".join(collected), f"finished with {key!r}"
        collected.append(key)
        if num_digits and len(collected) >= num_digits:
            return "".join(collected), f"numDigits={num_digits} reached"
    return "".join(collected), "timeout"


def _schema_problem(root: ET.Element) -> str | None:
    for el in root:
        tag = el.tag
        if not isinstance(tag, str):
            continue
        if tag not in _SIMULATED_VERBS | _SKIPPED_VERBS | _UNSIMULATED_VERBS:
            return f"<{tag}> is not a TwiML verb (verbs are case sensitive)"
        allowed: frozenset[str] | None = None
        if tag == "Gather":
            allowed = _GATHER_CHILDREN
        elif tag == "Dial":
            allowed = _DIAL_CHILDREN
        elif tag in _CHILDLESS_VERBS:
            allowed = frozenset()
        if allowed is not None:
            for child in el:
                if isinstance(child.tag, str) and child.tag not in allowed:
                    return f"<{child.tag}> is not allowed inside <{tag}>"
    return None


# --------------------------------------------------------------------------------------------------
# The end of a call, delivered as a HangupOrder says
# --------------------------------------------------------------------------------------------------


@dataclass
class _Delivery:
    name: HangupRequest
    events: list[CallEvent] = field(default_factory=list)
    sent: float = 0.0  # perf_counter() when its request went out


class _EndOfCall:
    """Sends the end-of-call requests of one call (functions that make one request each) in a HangupOrder.

    In turn: one after the other on the call's thread, each after the answer to the one before. At once:
    one thread each, released together by a barrier (then each waits its share of the spread), each with its
    own HTTP session so that nothing in the client serialises them. Either way the call's events are
    emitted on the call's thread, the requests numbered in the order they went out.
    """

    def __init__(
        self, call: _Call, order: HangupOrder, sends: Mapping[HangupRequest, Callable[[], None]]
    ) -> None:
        self.call = call
        self.order = order
        self.sends = sends

    def deliver(self) -> None:
        names = [n for n in self.order.requests if n in self.sends]
        lost = [n for n in HANGUP_REQUESTS if n in self.sends and n not in self.order.requests]
        how = "at once" if self.order.concurrent else "in turn"
        self.call.emit(
            CallEvent(
                kind="end-of-call",
                text=f"{', '.join(names) or 'nothing'} {how} (hang-up order {self.order})",
            )
        )
        if self.order.concurrent and len(names) > 1:
            deliveries = sorted(self._at_once(names), key=lambda d: d.sent)
            first = deliveries[0].sent if deliveries else 0.0
            for number, delivery in enumerate(deliveries, start=1):
                self._emit(delivery, number, first)
        else:
            first = 0.0
            for number, name in enumerate(names, start=1):
                delivery = self._send(name, None, 0.0, own_session=False)
                first = first or delivery.sent
                self._emit(delivery, number, first)
        for name in lost:
            self.call.emit(
                CallEvent(
                    kind="end-of-call",
                    text=f"{HANGUP_PURPOSES[name]} never sent: left out of the hang-up order "
                    "(as when Twilio gives up on it)",
                    purpose=HANGUP_PURPOSES[name],
                )
            )

    def _at_once(self, names: Sequence[HangupRequest]) -> list[_Delivery]:
        gate = threading.Barrier(len(names))
        done: dict[str, _Delivery] = {}

        def run(name: HangupRequest, delay_s: float) -> None:
            done[name] = self._send(name, gate, delay_s, own_session=True)

        threads = [
            threading.Thread(target=run, args=(name, delay), name=f"twilio-end-{name}", daemon=True)
            for name, delay in zip(names, self.order.delays_s(len(names)), strict=True)
        ]
        for thread in threads:
            thread.start()
        wait_s = 2 * self.call.config.timeout_s + 5
        for thread in threads:
            thread.join(wait_s)
        for name in names:
            if name not in done:
                text = f"{HANGUP_PURPOSES[name]} still unanswered after {wait_s:g} s"
                self.call.emit(CallEvent(kind="error", text=text))
        return [done[name] for name in names if name in done]

    def _send(
        self, name: HangupRequest, gate: threading.Barrier | None, delay_s: float, *, own_session: bool
    ) -> _Delivery:
        delivery = _Delivery(name)
        session = requests.Session() if own_session else None
        try:
            with self.call.captured(delivery.events, session):
                if gate is not None:
                    # A sibling that never reaches the barrier must not hold the others back for ever.
                    with suppress(threading.BrokenBarrierError):
                        gate.wait(timeout=10)
                if delay_s:
                    time.sleep(delay_s)
                delivery.sent = time.perf_counter()
                try:
                    self.sends[name]()
                except Exception as exc:  # a simulator bug must show, not kill the thread silently
                    delivery.events.append(
                        CallEvent(kind="error", text=f"simulator failure sending {name}: {exc!r}")
                    )
        finally:
            if session is not None:
                session.close()
        return delivery

    def _emit(self, delivery: _Delivery, number: int, first: float) -> None:
        offset_ms = (delivery.sent - first) * 1000
        for event in delivery.events:
            if event.kind == "request":
                event = replace(event, order=number, offset_ms=offset_ms)
            self.call.emit(event)


# --------------------------------------------------------------------------------------------------
# Outbound calls: Twilio's Calls API (POST …/Calls.json) and the call it then places
# --------------------------------------------------------------------------------------------------

OperatorPlan = Literal["answer", "no-answer", "busy", "failed"]
ReporterPlan = Literal["answer", "no-answer", "busy", "voicemail", "failed"]
_CALL_EVENTS: Final = frozenset({"initiated", "ringing", "answered", "completed"})
_HTTP_URL_RE: Final = re.compile(r"https?://[^\s/]+(/\S*)?")


@dataclass(frozen=True)
class OutboundPlan:
    """What happens on one outbound call: does the called phone answer, and how does its <Dial> end.

    ``reporter`` is the party the TwiML ``<Dial>``s: ``answer`` talks ``talk_s`` seconds (answering machine
    detection, if asked for, says ``human``); ``voicemail`` is answered by a machine (``AnsweredBy=
    machine_start``), listened to for ``talk_s`` seconds; the others end the dialled leg with that status.
    """

    operator: OperatorPlan = "answer"
    reporter: ReporterPlan = "answer"
    talk_s: int = 30


@dataclass
class OutboundCall:
    """One call placed through Calls.json: the request's parameters, the plan played, and what happened."""

    sid: str
    to: str
    from_: str
    url: str
    plan: OutboundPlan
    result: CallResult
    status_callback: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def events(self) -> list[CallEvent]:
        return self.result.events


class OutboundCalls:
    """The Calls resource of a :class:`MediaServer` and the calls it places, the way Twilio does.

    ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (basic auth) with To, From (E.164), Url (http(s),
    Method POST or GET), and optionally StatusCallback, StatusCallbackEvent (repeated or space-separated:
    initiated ringing answered completed; ``completed`` by default), StatusCallbackMethod and Timeout
    answers 201 with the call's JSON (a ``CA…`` sid, status ``queued``), or Twilio's 400 (21201/21211 To,
    21603/21212 From, 21205 Url). Then, in a thread, it plays the call against the app at ``connect_base``
    (see :meth:`connect`): the status callbacks (``initiated``, ``ringing``, ``answered`` with
    ``CallStatus=in-progress``, and the final one with the end status and ``CallDuration``), the Url
    fetched with ``Direction=outbound-api`` and its TwiML followed like an inbound call's. A ``<Dial>``
    rings its ``<Number>`` under the ``callerId``: that leg's ``statusCallback`` events (with
    ``ParentCallSid``), answering machine detection's ``amdStatusCallback`` (``CallSid`` of the leg,
    ``AnsweredBy``, ``MachineDetectionDuration``) when ``machineDetection`` is set, then the Dial action
    (``DialCallStatus``, ``DialCallSid``, ``DialCallDuration``). Every request is signed.

    Outcomes follow :meth:`plan` (one :class:`OutboundPlan` per call, in order), then ``default``.
    Failures of the endpoint itself: ``media.inject("Calls", "http503", method="POST")``.
    """

    def __init__(self, media: MediaServer) -> None:
        self.media = media
        self.default = OutboundPlan()
        self.connect_base: str | None = None
        self.public_base: str | None = None
        self.on_event: Callable[[CallEvent], None] | None = None
        self._lock = threading.Lock()
        self._plans: list[OutboundPlan] = []
        self._calls: list[OutboundCall] = []
        self._threads: list[threading.Thread] = []

    def connect(
        self,
        connect_base: str,
        public_base: str | None = None,
        *,
        on_event: Callable[[CallEvent], None] | None = None,
    ) -> None:
        """Where the app that receives the calls' webhooks runs, and the public base URL it signs against."""
        self.connect_base = connect_base.rstrip("/")
        self.public_base = (public_base or connect_base).rstrip("/")
        self.on_event = on_event

    def plan(self, *plans: OutboundPlan) -> None:
        """The outcomes of the next calls, in order (after them, ``default``)."""
        with self._lock:
            self._plans.extend(plans)

    @property
    def calls(self) -> list[OutboundCall]:
        with self._lock:
            return list(self._calls)

    def wait(self, timeout_s: float = 30.0) -> list[OutboundCall]:
        """Wait until every call placed so far has ended (status callbacks included); the calls."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise TimeoutError(f"an outbound call is still going after {timeout_s:g} s")
        return self.calls

    def create(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        to, from_, url = form.get("To", ""), form.get("From", ""), form.get("Url", "")
        method = (form.get("Method") or "POST").upper()
        callback = form.get("StatusCallback") or None
        events = set(re.split(r"[\s,]+", (form.get("StatusCallbackEvent") or "completed").strip()))
        if not to:
            return _twilio_error(400, 21201, "No 'To' number is specified")
        if not _E164_RE.fullmatch(to):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not from_:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if not _E164_RE.fullmatch(from_):
            return _twilio_error(400, 21212, f"The 'From' number {from_} is not a valid phone number.")
        if not _HTTP_URL_RE.fullmatch(url) or method not in ("GET", "POST"):
            return _twilio_error(400, 21205, "Url is not a valid URL.")
        if callback is not None and not _HTTP_URL_RE.fullmatch(callback):
            return _twilio_error(400, 21205, "StatusCallback is not a valid URL.")
        if not events <= _CALL_EVENTS:
            return _twilio_error(400, 21626, "Invalid StatusCallbackEvent.")
        raw_timeout = form.get("Timeout", "").strip()
        timeout = (
            int(raw_timeout) if raw_timeout.isdigit() and len(raw_timeout) < 4 else 60
        )  # Twilio's default
        if self.connect_base is None or self.public_base is None:
            return _twilio_error(500, 20500, "the simulator does not know where the app is (connect())")
        sid = _new_sid("CA")
        with self._lock:
            plan = self._plans.pop(0) if self._plans else self.default
        config = SimulatorConfig(
            connect_base=self.connect_base,
            public_base=self.public_base,
            account_sid=self.media.account_sid,
            auth_token=self.media.auth_token,
            from_number=from_,
            to_number=to,
        )
        call = OutboundCall(sid, to, from_, url, plan, CallResult(call_sid=sid), callback)
        runner = _OutboundCall(
            config,
            self.media,
            call,
            method,
            callback,
            (form.get("StatusCallbackMethod") or "POST"),
            events,
            timeout,
            self.on_event,
        )
        thread = threading.Thread(target=runner.play, name=f"twilio-call-{sid[:10]}", daemon=True)
        media = self.media
        media.call_started(sid, from_number=from_, to_number=to, direction="outbound-api", status="queued")
        with self._lock:
            self._calls.append(call)
            self._threads.append(thread)
        thread.start()
        now = _rfc2822_now()
        return 201, {
            "account_sid": self.media.account_sid,
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "from": from_,
            "from_formatted": from_,
            "sid": sid,
            "status": "queued",
            "to": to,
            "to_formatted": to,
            "uri": f"/{API_VERSION}/Accounts/{self.media.account_sid}/Calls/{sid}.json",
        }


class _OutboundCall(_Call):
    """Plays one call placed through Calls.json (see :class:`OutboundCalls`)."""

    def __init__(
        self,
        config: SimulatorConfig,
        media: MediaServer,
        call: OutboundCall,
        method: str,
        status_callback: str | None,
        status_method: str,
        events: set[str],
        timeout_s: int,
        on_event: Callable[[CallEvent], None] | None,
    ) -> None:
        super().__init__(config, CallScript(), media, requests.Session(), on_event, None)
        self.call = call
        self.call_sid = call.sid
        self.result = call.result
        self.call_status = "queued"
        self.method = method.upper()
        self.status_callback = status_callback
        self.status_method = status_method.upper()
        self.events = events
        self.timeout_s = timeout_s
        self.sequence = 0

    def standard_params(self) -> dict[str, str]:
        params = super().standard_params()
        params["Direction"] = "outbound-api"
        return params

    def status(self, event: str, call_status: str, **extra: str) -> None:
        """The call's status callback for one event, if the request asked for it."""
        self.call_status = call_status
        duration = extra.get("CallDuration")
        self.media.call_updated(self.call_sid, call_status, duration_s=int(duration) if duration else None)
        if self.status_callback is None or event not in self.events:
            return
        params = {
            **self.standard_params(),
            "Timestamp": _rfc2822_now(),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self.sequence),
            **extra,
        }
        self.sequence += 1
        self.callback(self.status_callback, self.status_method, params, f"status-callback {event}")

    def play(self) -> None:
        try:
            self._play()
        except Exception as exc:  # a bug here must not hang the test that waits for the call
            self.emit(CallEvent(kind="error", text=f"simulator failure: {exc!r}"))
            self.result.ended_by = "error"
        finally:
            self.session.close()
            self.call.done.set()

    def _play(self) -> None:
        plan = self.call.plan
        self.status("initiated", "initiated")
        if plan.operator in ("busy", "failed"):
            self.emit(CallEvent(kind="hangup", text=f"the called phone: {plan.operator}"))
            self.result.call_status = plan.operator
            self.status("completed", plan.operator, CallDuration="0")
            return
        self.status("ringing", "ringing")
        if plan.operator == "no-answer":
            self.clock_s += self.timeout_s
            self.emit(CallEvent(kind="hangup", text=f"the called phone did not answer in {self.timeout_s} s"))
            self.result.call_status = "no-answer"
            self.status("completed", "no-answer", CallDuration="0")
            return
        self.answered = True
        self.status("answered", "in-progress")
        try:
            doc = self.load(self.call.url, self.method, {}, "url")
            while True:
                doc = self.execute(doc)
        except _FetchError as err:
            self.error_event(err)
            self.result.ended_by = "error"
        except _CallEnded as end:
            self.result.ended_by = end.ended_by
        self.result.call_status = "completed"
        self.result.duration_s = max(1, math.ceil(self.clock_s))
        self.status("completed", "completed", CallDuration=str(self.result.duration_s))

    def dial(self, doc: _Document, el: ET.Element) -> _Document | None:
        numbers = [c for c in el if c.tag == "Number"]
        target = numbers[0] if numbers else None
        number = ((target.text if target is not None else el.text) or "").strip()
        caller_id = el.get("callerId") or self.call.from_
        action = urljoin(doc.url, el.get("action") or "") if el.get("action") else None
        method = (el.get("method") or "POST").upper()
        timeout = _int_attr(el, "timeout", 30)
        leg_sid = _new_sid("CA")
        attrs = target.attrib if target is not None else {}
        leg_callback = urljoin(doc.url, attrs["statusCallback"]) if attrs.get("statusCallback") else None
        leg_events = set(re.split(r"[\s,]+", (attrs.get("statusCallbackEvent") or "completed").strip()))
        leg_method = (attrs.get("statusCallbackMethod") or "POST").upper()
        amd_url = urljoin(doc.url, attrs["amdStatusCallback"]) if attrs.get("amdStatusCallback") else None
        amd_method = (attrs.get("amdStatusCallbackMethod") or "POST").upper()
        detects = (attrs.get("machineDetection") or "") in ("Enable", "DetectMessageEnd")
        sequence = 0

        def leg(event: str, status: str, **extra: str) -> None:
            nonlocal sequence
            if leg_callback is None or event not in leg_events:
                return
            params = {
                "AccountSid": self.config.account_sid,
                "ApiVersion": API_VERSION,
                "CallSid": leg_sid,
                "ParentCallSid": self.call_sid,
                "CallStatus": status,
                "Direction": "outbound-dial",
                "From": caller_id,
                "Caller": caller_id,
                "To": number,
                "Called": number,
                "Timestamp": _rfc2822_now(),
                "CallbackSource": "call-progress-events",
                "SequenceNumber": str(sequence),
                **extra,
            }
            sequence += 1
            self.callback(leg_callback, leg_method, params, f"dial-leg {event}")

        plan = self.call.plan
        leg("initiated", "initiated")
        duration = 0
        status: str = plan.reporter
        if plan.reporter in ("busy", "failed"):
            leg("completed", status, CallDuration="0")
            self.clock_s += 1
        else:
            leg("ringing", "ringing")
            if plan.reporter == "no-answer":
                status = "no-answer"
                self.clock_s += timeout
                leg("completed", status, CallDuration="0")
            else:
                status, duration = "completed", plan.talk_s
                leg("answered", "in-progress")
                if detects and amd_url is not None:
                    answered_by = "machine_start" if plan.reporter == "voicemail" else "human"
                    amd = {
                        "AccountSid": self.config.account_sid,
                        "CallSid": leg_sid,
                        "AnsweredBy": answered_by,
                        "MachineDetectionDuration": "2100",
                    }
                    self.callback(amd_url, amd_method, amd, "amd-status")
                self.clock_s += duration
                leg("completed", "completed", CallDuration=str(duration))
        self.emit(
            CallEvent(
                kind="dial",
                text=f"{number} (callerId {caller_id})",
                outcome=f"{status} ({plan.reporter})",
                seconds=float(duration),
                url=action,
                method=method if action else None,
            )
        )
        if action is None:
            return None
        params = {"DialCallStatus": status, "DialCallSid": leg_sid, "DialCallDuration": str(duration)}
        return self.load(action, method, params, "dial-action")


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
        call = _Call(config, script, server, sess, on_event, recording_wav)
        return call.run()
    finally:
        if own_media:
            server.close()
        if own_session:
            sess.close()


# --------------------------------------------------------------------------------------------------
# Command line: python -m telephony.simulator --script "1,2,record:5"
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Call the hotline app the way Twilio would.")
    parser.add_argument("--connect", default=os.environ.get("SIM_CONNECT_BASE", "http://127.0.0.1:5001"))
    parser.add_argument("--public", default=os.environ.get("PUBLIC_BASE_URL"))
    parser.add_argument("--account-sid", default=os.environ.get("TWILIO_ACCOUNT_SID"))
    parser.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN"))
    parser.add_argument("--from", dest="from_number", default="+66812345678")
    parser.add_argument("--script", default="", help=SCRIPT_GRAMMAR)
    parser.add_argument(
        "--interactive", action="store_true", help="ask on the terminal when the script runs out"
    )
    parser.add_argument("--recording", help="WAV file to use as the caller's recorded audio")
    parser.add_argument(
        "--hangup-order",
        default=str(DEFAULT_HANGUP_ORDER),
        help="when the caller hangs up while recording (or right after #): the end-of-call requests, "
        f"e.g. 'action,status,recording' or 'concurrent'; {_HANGUP_HELP}",
    )
    args = parser.parse_args(argv)
    if not args.account_sid or not args.auth_token:
        parser.error("--account-sid and --auth-token (or TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN) are required")
    try:
        hangup_order = HangupOrder.parse(args.hangup_order)
    except ValueError as exc:
        parser.error(f"--hangup-order: {exc}")
    wav = None
    if args.recording:
        with open(args.recording, "rb") as fh:
            wav = fh.read()
    config = SimulatorConfig(
        connect_base=args.connect,
        public_base=args.public or args.connect,
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        from_number=args.from_number,
        recording_wav=wav,
        hangup_order=hangup_order,
    )
    script = CallScript.parse(args.script, input_fn=input if args.interactive else None)

    def show(event: CallEvent) -> None:
        print(event.describe(), flush=True)

    with MediaServer(config.account_sid, config.auth_token) as media:
        result = run_call(config, script, media=media, on_event=show)
    print(f"call {result.call_sid} ended by {result.ended_by} ({result.call_status}, {result.duration_s}s)")
    return 0 if result.ended_by != "error" else 1


if __name__ == "__main__":
    sys.exit(main())
