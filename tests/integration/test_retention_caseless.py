"""Retention of recordings no case holds, and the counts each finished sweep leaves for the privacy page.

A recording with no case (the caller hung up before a case opened, or a second message its call's case
never took) goes after the drafts' period: file, words and Twilio's copy, with a tombstone on its call's
case, or an audit row where there is no case. A call whose case is under legal hold keeps its recordings.
Runs on SQLite and, with HOTLINE_TEST_DATABASE=postgresql, on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import upgrade_database
from cases.models import Call, CaseEvent, RetentionRun
from cases.offices import load_offices
from cases.retention import RetentionSettings, RetentionSweep, plan, set_hold
from cases.retention.sweep import TOMBSTONE, last_run
from cases.staff import AuditEvent
from infra.clock import utcnow
from infra.crypto import FieldCipher
from infra.db import Database
from infra.sealed import new_recording_key
from telephony.rest import TwilioRest
from telephony.simulator.media_server import MediaServer
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, database_url
from tests.support.seed import seed_console, tone_wav
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus

# The drafts' period is 20 days; every other kind's is longer, so only drafts and caseless recordings
# fall due at day 21 (the seed's drafts are erased too: they are counted as drafts, not recordings).
SETTINGS = RetentionSettings(
    caller_numbers=100, drafts=20, recordings=100, call_events=100, notifications=100, audit=200, batch=2
)


@dataclass
class Place:
    db: Database
    media: MediaServer
    twilio: TwilioRest
    start: datetime
    recs: dict[str, int]  # the test's recordings by name: "lone", "unlinked", "held"
    cases: dict[str, int]


def _recording(session: Session, sid: str, call_sid: str, folder: Path, at: datetime) -> Recording:
    stored = folder / f"{sid}.wav.sealed"
    stored.write_bytes(b"sealed audio stand-in")
    rec = Recording(
        recording_sid=sid, call_sid=call_sid, language="th", media_url=f"https://api.twilio.com/R/{sid}",
        duration_s=2, status="completed", storage_status=StorageStatus.STORED, stored_path=str(stored),
        created_at=at, updated_at=at,
    )  # fmt: skip
    session.add(rec)
    session.flush()
    session.add(
        Transcript(recording_id=rec.id, status=TranscriptStatus.DONE, language="th", text="มีคนรังแก",
                   words=[], created_at=at, finished_at=at)
    )  # fmt: skip
    return rec


@pytest.fixture
def place(tmp_path: Path) -> Iterator[Place]:
    url = database_url(tmp_path)
    upgrade_database(url)
    db = Database(url)
    start = utcnow()
    media = MediaServer(ACCOUNT_SID, AUTH_TOKEN).start()
    recs: dict[str, int] = {}
    with db.session() as session:
        load_offices(session)
        s = seed_console(
            session,
            cipher=FieldCipher(Fernet.generate_key().decode()),
            recordings_dir=tmp_path,
            recording_key=new_recording_key(),
            clock=lambda: start + timedelta(days=3),  # the seed's rows are made at `start`
        )
        for seeded in s.recordings.values():  # Twilio still holds every copy
            media.register(seeded.recording_sid, tone_wav())
        lone = Call(call_sid="CAlone", status="completed", ivr_state={}, created_at=start, updated_at=start)
        session.add(lone)
        session.flush()
        calls = {
            "lone": "CAlone",  # hung up before a case opened
            "unlinked": session.get_one(Call, s.cases["routed_50"].call_id).call_sid,  # a second message
            "held": session.get_one(Call, s.cases["resolved_50"].call_id).call_sid,
        }
        for name, call_sid in calls.items():
            recs[name] = _recording(session, f"RE{name}", call_sid, tmp_path, start).id
            media.register(f"RE{name}", tone_wav())
        set_hold(session, s.cases["resolved_50"], s.users["head50"], "ขอเก็บไว้เป็นหลักฐาน", clock=lambda: start)
        cases = {key: case.id for key, case in s.cases.items()}
    try:
        yield Place(db, media, TwilioRest(media.base_url, ACCOUNT_SID, AUTH_TOKEN), start, recs, cases)
    finally:
        media.close()
        db.dispose()


def _kept(p: Place, name: str) -> bool:
    with p.db.session() as session:
        rec = session.get_one(Recording, p.recs[name])
        text = session.scalar(select(Transcript.text).where(Transcript.recording_id == rec.id))
        on_disk = rec.stored_path is not None and Path(rec.stored_path).exists()
        parts = (rec.erased_at is None, on_disk, text is not None, rec.deleted_at_twilio is None)
        assert len(set(parts)) == 1, (name, parts)  # all of it went, or none of it
        return parts[0]


def _tombstones(p: Place, case_key: str) -> list[dict[str, object]]:
    with p.db.session() as session:
        return [
            e.detail
            for e in session.scalars(
                select(CaseEvent).where(CaseEvent.case_id == p.cases[case_key], CaseEvent.action == TOMBSTONE)
            )
        ]


def _audit_tombstones(p: Place) -> list[dict[str, object]]:
    with p.db.session() as session:
        return [a.detail for a in session.scalars(select(AuditEvent).where(AuditEvent.action == TOMBSTONE))]


def test_recordings_no_case_holds_go_after_the_drafts_period_with_a_tombstone(place: Place) -> None:
    p = place
    RetentionSweep(p.db, SETTINGS, p.twilio, clock=lambda: p.start + timedelta(days=19)).sweep()
    assert all(_kept(p, name) for name in p.recs)
    with p.db.session() as session:
        due = {(r.kind, r.office): r.count for r in plan(session, p.start + timedelta(days=21), SETTINGS)}
    assert due[("recordings", "-")] == 2  # lone and unlinked; held's call's case is under legal hold

    counts = RetentionSweep(p.db, SETTINGS, p.twilio, clock=lambda: p.start + timedelta(days=21)).sweep()
    assert not _kept(p, "lone") and not _kept(p, "unlinked") and _kept(p, "held")
    deleted = sorted(path.rsplit("/", 1)[-1] for _, path in p.media.requests("DELETE"))
    assert "RElone.json" in deleted and "REunlinked.json" in deleted and "REheld.json" not in deleted
    on = (p.start + timedelta(days=21)).date().isoformat()
    # The unlinked message's tombstone is on its call's case; the lone call's is an audit row by no one.
    assert {"what": "recording", "on": on, "recording": p.recs["unlinked"]} in _tombstones(p, "routed_50")
    assert _audit_tombstones(p) == [{"what": "recording", "recording": p.recs["lone"]}]
    assert _tombstones(p, "resolved_50") == []
    assert counts["recordings"] == 2

    RetentionSweep(p.db, SETTINGS, p.twilio, clock=lambda: p.start + timedelta(days=22)).sweep()
    assert len(_audit_tombstones(p)) == 1  # erased once: the second night finds nothing of it
    assert [t["what"] for t in _tombstones(p, "routed_50")].count("recording") == 1


def test_each_finished_sweep_records_its_counts_by_kind(place: Place) -> None:
    p = place
    with p.db.session() as session:
        assert last_run(session) is None
    first = RetentionSweep(p.db, SETTINGS, p.twilio, clock=lambda: p.start + timedelta(days=21)).sweep()
    second = RetentionSweep(p.db, SETTINGS, p.twilio, clock=lambda: p.start + timedelta(days=22)).sweep()
    with p.db.session() as session:
        runs = list(session.scalars(select(RetentionRun).order_by(RetentionRun.id)))
        latest = last_run(session)
    assert [r.counts for r in runs] == [first, second]
    assert first["drafts"] == 2 and first["recordings"] == 2  # the seed's two drafts; lone and unlinked
    # Draft_central's recording and the two caseless ones: their files and Twilio's copies.
    assert first["files"] == 3 and first["twilio_copies"] == 3
    assert set(second.values()) == {0} and latest is not None and latest.id == runs[-1].id
    assert runs[0].started_at == p.start + timedelta(days=21) and runs[0].faults == 0
