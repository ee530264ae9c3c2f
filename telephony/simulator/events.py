"""What happened on a simulated call: its events, one by one, and the result they add up to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

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
    """A finished call: its events in order, how it ended, its recordings, status and duration."""

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


class CallEnded(Exception):
    """The call is over (raised out of the verb that ended it); how, and the call's final status."""

    def __init__(self, ended_by: EndedBy, call_status: str = "completed") -> None:
        super().__init__(ended_by)
        self.ended_by: EndedBy = ended_by
        self.call_status = call_status
