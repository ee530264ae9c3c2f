"""The caller's script: the keys pressed, recordings made and hang-ups (``1,10,1,1,record:5:#:hangup``), and
the order Twilio delivers the end of a call in (``action,status,recording``, ``concurrent``)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, cast

if TYPE_CHECKING:
    from telephony.simulator.events import CallResult

ActionKind = Literal["digits", "silence", "speech", "record", "hangup", "dial"]

DIAL_STATUSES: Final = frozenset({"completed", "no-answer", "busy", "failed", "canceled"})
DEFAULT_RECORD_SECONDS: Final = 5
DEFAULT_DIAL_SECONDS: Final = 10


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


class ScriptCursor:
    """Where one call is in its script: the next token, or the terminal once the script has run out."""

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
HANGUP_HELP: Final = (
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
            raise ValueError(f"bad hang-up order {str(self)!r}: {problem}; {HANGUP_HELP}")

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
                        f"bad hang-up order {raw!r}: {item!r} is not a number; {HANGUP_HELP}"
                    ) from None
                continue
            names.append(item)
        if not names and not concurrent:
            problem: str | None = "no request named"
        else:
            problem = _hangup_order_problem(names, concurrent, spread_ms)
        if problem is not None:
            raise ValueError(f"bad hang-up order {raw!r}: {problem}; {HANGUP_HELP}")
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
