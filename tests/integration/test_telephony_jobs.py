"""The worker's telephony sweeps: spooled rescue messages become cases; calls without a goodbye are closed."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from sqlalchemy import select

from cases.models import Call, Case
from infra.clock import utcnow
from infra.db import database
from telephony import jobs, service, spool
from telephony.webhooks import telephony
from tests.conftest import ACCOUNT_SID, TwilioCaller
from tests.integration.test_webhooks import Recorded, walk
from transcription.models import Recording


def test_a_spooled_rescue_message_is_stored_with_a_case_once(app: Flask) -> None:
    tel: service.Telephony = telephony(app)
    db = database(app)
    rec_sid = "RE" + "7" * 32
    form = {
        "CallSid": "CA" + "8" * 32,
        "RecordingSid": rec_sid,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{rec_sid}",
        "RecordingDuration": "9",
        "From": "+66812345678",
    }
    path = spool.keep(tel, spool.MESSAGE, form)
    assert path is not None and path.exists()
    assert os.stat(tel.spool_dir).st_mode & 0o777 == 0o700
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert "812345678" not in path.read_text()  # the caller's number is spooled only encrypted

    assert jobs.replay_spool(db, tel) == 1
    assert not path.exists()
    assert jobs.replay_spool(db, tel) == 0  # nothing left, nothing twice

    with db.session() as session:
        case = session.scalars(select(Case)).one()
        assert case.opened_by == "rescue"
        assert case.call is not None and case.call.caller_number_masked == "+66 8x xxx x678"
        recording = session.scalars(select(Recording)).one()
        assert (recording.recording_sid, recording.case_id) == (rec_sid, case.id)


def test_an_unreadable_spool_file_is_left_for_a_person(app: Flask) -> None:
    tel: service.Telephony = telephony(app)
    tel.spool_dir.mkdir(parents=True, exist_ok=True)
    bad = tel.spool_dir / "20260101T000000-broken.json"
    bad.write_text("{not json")
    assert jobs.replay_spool(database(app), tel) == 0
    assert bad.exists()


def test_a_call_whose_status_callback_never_came_is_closed_and_its_message_kept(
    app: Flask, new_caller: Callable[..., TwilioCaller]
) -> None:
    caller = new_caller()
    # Violence, Chiang Mai confirmed, call back on this number, a message recorded, then silence.
    walk(caller, "1", "50", "1", "1", Recorded())
    db = database(app)
    tel: service.Telephony = telephony(app)

    assert jobs.close_stale_calls(db, tel) == 0  # a call in progress is left alone
    later = dataclasses.replace(tel, clock=lambda: utcnow() + timedelta(hours=3))
    assert jobs.close_stale_calls(db, later) == 1
    assert jobs.close_stale_calls(db, later) == 0  # closed once

    with db.session() as session:
        call = session.scalars(select(Call).where(Call.call_sid == caller.call_sid)).one()
        assert call.ended_at is not None and call.status == "ended-unreported"
        assert call.case is not None
        assert call.case.opened_by == "hangup"
        assert call.case.province_code == "50"
