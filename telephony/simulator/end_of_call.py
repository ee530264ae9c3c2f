"""The end of a call whose caller hung up with a recording outstanding: the three requests Twilio sends
then (the ``<Record>`` action, the recording status, the call status), delivered as a HangupOrder says."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import requests

from telephony.simulator.events import CallEnded, CallEvent
from telephony.simulator.script import HANGUP_PURPOSES, HANGUP_REQUESTS, HangupOrder, HangupRequest

if TYPE_CHECKING:
    from telephony.simulator.player import Call


def finish_after_hangup(call: Call, pending: Mapping[HangupRequest, Callable[[], None] | None]) -> CallEnded:
    """The caller hung up with a recording outstanding: the end-of-call requests go out as
    ``config.hangup_order`` says, the call status callback among them."""
    call.call_status = call.result.call_status = "completed"
    status_params = call.end_call()
    call.status_handled = True
    sends = {name: send for name, send in pending.items() if send is not None}
    status_url = call.config.public_url(call.config.status_path)
    sends["status"] = lambda: call.sender.callback(status_url, "POST", status_params, "status-callback")
    EndOfCall(call, call.config.hangup_order, sends).deliver()
    return CallEnded("caller-hangup")


@dataclass
class _Delivery:
    name: HangupRequest
    events: list[CallEvent] = field(default_factory=list)
    sent: float = 0.0  # perf_counter() when its request went out


class EndOfCall:
    """Sends the end-of-call requests of one call (functions that make one request each) in a HangupOrder.

    In turn: one after the other on the call's thread, each after the answer to the one before. At once:
    one thread each, released together by a barrier (then each waits its share of the spread), each with its
    own HTTP session so that nothing in the client serialises them. Either way the call's events are
    emitted on the call's thread, the requests numbered in the order they went out.
    """

    def __init__(
        self, call: Call, order: HangupOrder, sends: Mapping[HangupRequest, Callable[[], None]]
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
