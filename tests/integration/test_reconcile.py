"""The reconcile sweep: a message Twilio holds reaches a case within one sweep, even if no webhook said so.

The calls are real simulated calls against the app on a threaded server; the simulator's MediaServer
stands in for Twilio's REST API (basic auth, the Recordings list and the Calls resource), and the
hang-up order leaves out the requests that Twilio failed to deliver.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from app import get_database
from cases.models import Call, Case
from cases.reference import display_reference
from infra.config import Config
from infra.crypto import FieldCipher
from telephony.reconcile import Reconciler, ReconcileSettings
from telephony.rest import TwilioRest
from telephony.simulator.audio import generate_wav
from telephony.simulator.commands import serve_in_thread
from telephony.simulator.config import SimulatorConfig
from telephony.simulator.media_server import MediaServer
from telephony.simulator.run import run_call
from telephony.simulator.script import CallScript
from telephony.webhooks import telephony
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE
from tests.integration.test_console import login, text
from tests.support.seed import seed_console
from transcription.models import Recording

NOW = ReconcileSettings(grace=timedelta(0), quiet=timedelta(0))  # no waiting in tests: mend at once


@pytest.fixture
def media() -> Iterator[MediaServer]:
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    with serve_in_thread(app) as base:
        yield base


def reconciler(app: Flask, media: MediaServer, settings: ReconcileSettings = NOW) -> Reconciler:
    rest = TwilioRest(media.base_url, ACCOUNT_SID, AUTH_TOKEN)
    return Reconciler(get_database(app), telephony(app), rest, settings)


def call(served: str, media: MediaServer, keys: str, order: str) -> str:
    sim = SimulatorConfig(
        connect_base=served, public_base=PUBLIC_BASE, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
    )
    result = run_call(sim, CallScript.parse(keys), media=media, hangup_order=order)
    assert not result.errors(), [e.describe() for e in result.events]
    [sid] = result.recordings
    return sid


def case_of(app: Flask, recording_sid: str) -> Case | None:
    with get_database(app).session() as session:
        row = session.scalar(select(Recording).where(Recording.recording_sid == recording_sid))
        if row is None or row.case_id is None:
            return None
        case = session.get(Case, row.case_id)
        assert case is not None
        _ = case.office, case.call
        return case


@pytest.mark.parametrize("ending", ["record:6:hangup", "record:6:#:hangup"])
def test_a_message_whose_webhooks_were_all_lost_becomes_a_case_in_one_sweep(
    app: Flask, served: str, media: MediaServer, ending: str
) -> None:
    sid = call(served, media, f"1,50,1,1,{ending}", order="none")  # Twilio delivered none of the three
    assert case_of(app, sid) is None
    assert reconciler(app, media).sweep() >= 1
    case = case_of(app, sid)
    assert case is not None, "the message Twilio holds is still without a case"
    assert (case.category, case.office.code, case.status) == ("violence", "50", "draft")
    assert case.callback_requested and case.callback_number_masked == "+66 8x xxx x678"
    assert case.call is not None and case.call.ended_at is not None and case.call.status == "completed"
    # Nothing twice: a second sweep, and then the late webhooks themselves, change nothing.
    reconciler(app, media).sweep()
    with get_database(app).session() as session:
        assert len(session.scalars(select(Case)).all()) == 1
        rec = session.scalar(select(Recording).where(Recording.recording_sid == sid))
        assert rec is not None and rec.status == "completed" and rec.next_attempt_at is not None


def test_a_lost_status_callback_is_asked_of_twilio(app: Flask, served: str, media: MediaServer) -> None:
    # Pressed # and hung up: the action and the recording came, the call's end never did.
    sid = call(served, media, "3,10,1,3,record:5:#:hangup", order="action,recording")
    assert case_of(app, sid) is None
    reconciler(app, media).sweep()
    case = case_of(app, sid)
    assert case is not None and case.opened_by == "hangup" and not case.callback_requested


def test_a_recording_of_a_call_we_never_heard_of_opens_a_draft_case_the_console_shows(
    app: Flask, media: MediaServer, config: Config
) -> None:
    call_sid = "CA" + uuid.uuid4().hex
    rec_sid = "RE" + uuid.uuid4().hex
    media.call_started(call_sid, from_number="+66812345678", to_number="+6621266565")
    media.register(rec_sid, generate_wav(7.0), call_sid=call_sid, duration_s=7)
    media.call_updated(call_sid, "completed", duration_s=30)
    reconciler(app, media).sweep()
    case = case_of(app, rec_sid)
    assert case is not None
    assert (case.opened_by, case.status, case.office.code) == ("reconcile", "draft", "central")
    # The call-centre agent sees it in the queue at once: a draft, never silently dropped.
    with get_database(app).session() as session:
        seeded = seed_console(session, cipher=FieldCipher(config.data_key))
    client = app.test_client()
    login(client, "agent", seeded.password)
    queue = client.get("/console/")
    assert queue.status_code == 200 and display_reference(case.reference) in text(queue)


def test_a_call_still_on_the_line_is_left_to_its_own_end(app: Flask, media: MediaServer) -> None:
    call_sid = "CA" + uuid.uuid4().hex
    rec_sid = "RE" + uuid.uuid4().hex
    with get_database(app).session() as session:
        session.add(Call(call_sid=call_sid, status="in-progress", language="th"))
    media.call_started(call_sid, from_number="+66812345678", to_number="+6621266565")
    media.register(rec_sid, generate_wav(4.0), call_sid=call_sid, duration_s=4)
    reconciler(app, media).sweep()
    assert case_of(app, rec_sid) is None  # the caller may still press "send" or record again
    with get_database(app).session() as session:
        live = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert live is not None and live.ended_at is None


def test_twilio_unreachable_leaves_our_own_mending_to_run(app: Flask, media: MediaServer) -> None:
    # A recording we noted for a call that has ended, never linked (say, a crash between requests).
    call_sid, rec_sid = "CA" + uuid.uuid4().hex, "RE" + uuid.uuid4().hex
    from infra.clock import utcnow
    from transcription import ingest

    with get_database(app).session() as session:
        session.add(Call(call_sid=call_sid, status="completed", language="th", ended_at=utcnow()))
        ingest.apply_status_callback(
            session,
            recording_sid=rec_sid,
            call_sid=call_sid,
            status="completed",
            media_url=media.register(rec_sid, generate_wav(3.0)),
            duration_s=3,
            language="th",
            now=utcnow(),
        )
    media.inject("Recordings", "http500", times=None)
    reconciler(app, media).sweep()
    case = case_of(app, rec_sid)
    assert case is not None and case.opened_by == "reconcile"
