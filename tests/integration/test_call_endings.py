"""The end of a call in every order Twilio may send it: each message lands in exactly one case.

When a caller hangs up during <Record> (Digits=hangup), or presses # and hangs up at once, Twilio sends
the <Record> action, the recording status callback and the call status callback with no promised order,
possibly at the same moment on different threads. Whatever the order, the end state must be the same:
one case holding the message, with the callback request when one was made; for a follow-up call, the
message added to the case looked up and no case of its own.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from app import get_database
from cases.models import Call, Case, CaseEvent
from infra.db import Database
from telephony.simulator.commands import serve_in_thread
from telephony.simulator.config import SimulatorConfig
from telephony.simulator.media_server import MediaServer
from telephony.simulator.run import run_call
from telephony.simulator.script import CallScript
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE, TwilioCaller, sign
from tests.integration.test_end_to_end import _env, gunicorn
from tests.integration.test_webhooks import (
    FULL_CALL,
    OTHER_NUMBER,
    Recorded,
    export_cases,
    walk,
)
from transcription.models import Recording

REQUESTS = ("action", "recording", "status")
ORDERS = list(itertools.permutations(REQUESTS))
ENDINGS = ("hangup", "#")  # hung up while recording; pressed # and hung up at once


@dataclass(frozen=True)
class Caller:
    """Who is calling and what they chose before the message."""

    name: str
    keys: tuple[str, ...]
    callback: bool
    masked: str | None
    follow_up: bool = False


KINDS = {
    "callback": Caller("callback", FULL_CALL, True, "+66 8x xxx x678"),
    "other": Caller("other", ("1", "50", "1", "2", OTHER_NUMBER, "1"), True, "+66 8x xxx x432"),
    "anonymous": Caller("anonymous", ("3", "10", "1", "3"), False, None),
    "follow_up": Caller("follow_up", ("5", "<reference>", "1"), False, None, follow_up=True),
}


def _reported(app: Flask, new_caller: Callable[..., TwilioCaller]) -> str:
    """A case reported earlier, to follow up: its reference."""
    reporter = new_caller()
    walk(reporter, *FULL_CALL, Recorded(), "1")
    reporter.post("/twilio/status", CallStatus="completed", CallDuration="40")
    [case] = export_cases(app)
    return str(case["reference"])


def _end_requests(
    caller: TwilioCaller, rec: Recorded, record_url: str
) -> dict[str, tuple[str, dict[str, str]]]:
    """The three requests of a hang-up, as (absolute public URL, form) each, signed when sent."""
    status_form = caller.params(CallStatus="completed", CallDuration="61")
    recording_form = {k: v for k, v in rec.form().items() if k != "Digits"}
    return {
        "action": (
            record_url,
            caller.params(CallStatus="completed" if rec.digits == "hangup" else "in-progress", **rec.form()),
        ),
        "recording": (
            PUBLIC_BASE + "/twilio/recording-status",
            {**caller.params(), "RecordingStatus": "completed", **recording_form},
        ),
        "status": (PUBLIC_BASE + "/twilio/status", status_form),
    }


def _to_record(app: Flask, caller: TwilioCaller, kind: Caller, reference: str | None) -> str:
    keys = tuple(reference if k == "<reference>" else k for k in kind.keys)
    record = walk(caller, *keys)
    return record.action("Record")


def _post(caller: TwilioCaller, url: str, form: dict[str, str]) -> int:
    path = url[len(PUBLIC_BASE) :]
    return caller.client.post(path, data=form, headers={"X-Twilio-Signature": sign(url, form)}).status_code


# ---- what must hold at the end -------------------------------------------------------------------


def assert_one_home(
    app: Flask, caller: TwilioCaller, kind: Caller, rec: Recorded, reference: str | None
) -> None:
    """The message is in exactly one case, with the callback request when one was made; nothing twice."""
    with get_database(app).session() as session:
        call = session.scalar(select(Call).where(Call.call_sid == caller.call_sid))
        assert call is not None and call.ended_at is not None
        [row] = session.scalars(select(Recording).where(Recording.recording_sid == rec.sid)).all()
        assert row.case_id is not None, f"the message of a {kind.name} call ({rec.digits}) is in no case"
        case = session.get(Case, row.case_id)
        assert case is not None
        own = session.scalars(select(Case).where(Case.call_id == call.id)).all()
        if kind.follow_up:
            assert own == [], "a follow-up call opened a case of its own"
            assert case.reference == reference
            attached = session.scalars(
                select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.action == "follow_up_message")
            ).all()
            assert [e.detail["recording_sid"] for e in attached].count(rec.sid) == 1
            return
        assert own == [case], "not one case for the call"
        assert case.opened_by == "hangup"
        assert case.callback_requested is kind.callback
        assert case.callback_number_masked == kind.masked
        assert (call.caller_number_enc is None) is (kind.name == "anonymous")
        assert [r.recording_sid for r in case.recordings] == [rec.sid]


# ---- every order, one after another -------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_every_order_of_the_hang_up_keeps_the_message_in_one_case(
    app: Flask,
    new_caller: Callable[..., TwilioCaller],
    kind: Caller,
    ending: str,
    order: tuple[str, ...],
) -> None:
    reference = _reported(app, new_caller) if kind.follow_up else None
    caller = new_caller()
    record_url = _to_record(app, caller, kind, reference)
    rec = Recorded(digits=ending)
    sent = _end_requests(caller, rec, record_url)
    for name in order:
        url, form = sent[name]
        assert _post(caller, url, form) == 200
    assert_one_home(app, caller, kind, rec, reference)
    # Twilio may deliver any of them again: nothing changes.
    for name in REQUESTS:
        url, form = sent[name]
        assert _post(caller, url, form) == 200
    assert_one_home(app, caller, kind, rec, reference)


# ---- all three at once, on a multi-threaded server ------------------------------------------------


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    with serve_in_thread(app) as base:
        yield base


def _at_once(base: str, requests_: list[tuple[str, dict[str, str]]]) -> list[int]:
    start = threading.Barrier(len(requests_))

    def post(item: tuple[str, dict[str, str]]) -> int:
        url, form = item
        headers = {"X-Twilio-Signature": sign(url, form)}
        start.wait(timeout=10)
        return requests.post(
            base + url[len(PUBLIC_BASE) :], data=form, headers=headers, timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=len(requests_)) as pool:
        return list(pool.map(post, requests_))


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_the_hang_up_requests_at_once_keep_the_message_in_one_case(
    app: Flask,
    served: str,
    new_caller: Callable[..., TwilioCaller],
    kind: Caller,
    ending: str,
) -> None:
    reference = _reported(app, new_caller) if kind.follow_up else None
    for _ in range(4):
        caller = new_caller()
        record_url = _to_record(app, caller, kind, reference)
        rec = Recorded(digits=ending)
        sent = _end_requests(caller, rec, record_url)
        assert _at_once(served, [sent[name] for name in REQUESTS]) == [200, 200, 200]
        assert_one_home(app, caller, kind, rec, reference)


# ---- two server processes, the simulator delivering the hang-up at once -------------------------------

SCRIPTS = {
    "callback": ("1,10,1,1", True, "+66 8x xxx x678"),
    "other": ("1,50,1,2,0898765432#,1", True, "+66 8x xxx x432"),
    "anonymous": ("3,10,1,3", False, None),
    "follow_up": ("5,{reference}#,1", False, None),
}


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[str, Database]]:
    """gunicorn as the README runs it on two cores: two processes of four threads each."""
    env = _env(tmp_path)
    flags = ("--worker-class", "gthread", "--workers", "2", "--threads", "4")
    with gunicorn(tmp_path, env, *flags) as base:
        db = Database(env["DATABASE_URL"])
        try:
            yield base, db
        finally:
            db.dispose()


@pytest.mark.slow
def test_hang_ups_delivered_at_once_to_two_server_processes_keep_every_message(
    two_processes: tuple[str, Database],
) -> None:
    base, db = two_processes
    sim = SimulatorConfig(
        connect_base=base, public_base=PUBLIC_BASE, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
    )
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        first = run_call(sim, CallScript.parse("1,10,1,1,record:5,1"), media=media)
        with db.session() as session:
            reference = session.scalars(select(Case.reference)).one()
        placed: list[tuple[str, str, str]] = []  # (kind, call sid, recording sid)
        for round_ in range(3):
            for kind, (keys, _cb, _masked) in SCRIPTS.items():
                for ending in ("record:6:hangup", "record:6:#:hangup"):
                    script = CallScript.parse(f"{keys.format(reference=reference)},{ending}")
                    order = f"concurrent:spread={round_ * 2},seed={len(placed)}"
                    result = run_call(sim, script, media=media, hangup_order=order)
                    assert [e.status for e in result.end_of_call()] == [200, 200, 200], result.events
                    placed.append((kind, result.call_sid, result.recordings[-1]))
    with db.session() as session:
        followed = session.scalar(select(Case).where(Case.reference == reference))
        assert followed is not None and followed.call is not None
        assert followed.call.call_sid == first.call_sid
        for kind, call_sid, rec_sid in placed:
            _keys, callback, masked = SCRIPTS[kind]
            rec = session.scalar(select(Recording).where(Recording.recording_sid == rec_sid))
            assert rec is not None and rec.case_id is not None, f"{kind} call {call_sid}: message in no case"
            call_row = session.scalar(select(Call).where(Call.call_sid == call_sid))
            assert call_row is not None
            own = session.scalars(select(Case).where(Case.call_id == call_row.id)).all()
            if kind == "follow_up":
                assert own == [] and rec.case_id == followed.id
                continue
            assert [c.id for c in own] == [rec.case_id]
            assert (own[0].callback_requested, own[0].callback_number_masked) == (callback, masked)
