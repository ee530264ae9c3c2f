"""Retention: a clock moved through each period erases exactly what is due, and nothing under legal hold.

Runs on SQLite and, with HOTLINE_TEST_DATABASE=postgresql, on PostgreSQL. Twilio is the simulator's
MediaServer (basic auth checked), reached through telephony's real REST client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import func, select

from app import get_database, upgrade_database
from cases import audit, workflow
from cases.models import (
    Call,
    Callback,
    CallbackState,
    CallEvent,
    Case,
    CaseEvent,
    Channel,
    Notification,
    NotificationAttempt,
    NotificationStatus,
)
from cases.offices import load_offices
from cases.retention import KINDS, RetentionSettings, RetentionSweep, plan, set_hold
from cases.retention.sweep import TOMBSTONE
from cases.staff import AuditEvent, Role, RoleAssignment
from infra.clock import utcnow
from infra.config import Config
from infra.crypto import FieldCipher
from infra.db import Database
from infra.scheduler import Sweep, build_scheduler
from infra.sealed import new_recording_key
from infra.sweeps import SweepReport
from telephony.rest import TwilioRest
from telephony.simulator.media_server import MediaServer
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, database_url, make_config
from tests.support.seed import seed_console, tone_wav
from transcription.models import Recording, Transcript

# Distinct periods, so each step of the clock erases one kind only.
SETTINGS = RetentionSettings(
    caller_numbers=10, drafts=20, recordings=30, call_events=40, notifications=50, audit=60, batch=2
)
HELD = ("draft_central", "resolved_50")


class Clock:
    __test__ = False

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    db: Database
    media: MediaServer
    twilio: TwilioRest
    start: datetime  # when the test's own rows were made; the seed's are three days older
    clock: Clock
    names: dict[str, int]  # notifications and audit rows by the test's name for them
    caseless_call: int

    def sweep(self, **kwargs: Any) -> RetentionSweep:
        return RetentionSweep(self.db, SETTINGS, self.twilio, clock=self.clock, **kwargs)

    def at_day(self, days: int) -> None:
        self.clock.now = self.start + timedelta(days=days)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    url = database_url(tmp_path)
    upgrade_database(url)
    db = Database(url)
    start = utcnow()
    names: dict[str, int] = {}
    media = MediaServer(ACCOUNT_SID, AUTH_TOKEN).start()
    with db.session() as session:
        load_offices(session)
        s = seed_console(
            session,
            cipher=FieldCipher(Fernet.generate_key().decode()),
            recordings_dir=tmp_path,
            recording_key=new_recording_key(),
        )
        u, c = s.users, s.cases
        for rec in s.recordings.values():  # Twilio still holds every copy
            media.register(rec.recording_sid, tone_wav())
        # in_action_50 (summarised) is resolved now: its recording may go 30 days on.
        workflow.resolve(session, c["in_action_50"], u["action50"], "ยุติแล้ว", clock=lambda: start)
        # routed_50's callback was reached now; proposed_50's is still open.
        for key, closed in (("routed_50", start), ("proposed_50", None)):
            session.add(
                Callback(
                    case_id=c[key].id,
                    office_id=c[key].office_id,
                    state=CallbackState.REACHED if closed else CallbackState.PENDING,
                    due_at=start,
                    first_due_at=start,
                    closed_at=closed,
                )
            )
        caseless = Call(
            call_sid="CAcaseless", status="completed", caller_number_enc="x", caller_number_masked="08x",
            ivr_state={"step": 1}, created_at=start, updated_at=start,
        )  # fmt: skip
        session.add(caseless)
        session.flush()
        session.add(CallEvent(call_id=caseless.id, at=start, node="welcome", kind="call_started", detail={}))
        for name, key, status in (
            ("sent", "in_action_50", NotificationStatus.SENT),
            ("pending", "routed_50", NotificationStatus.PENDING),
            ("held", "resolved_50", NotificationStatus.SENT),
        ):
            n = Notification(
                dedupe_key=name, kind="reminder", channel=Channel.CONSOLE, case_id=c[key].id,
                user_id=u["op50"].id, subject="s", body="b", status=status, created_at=start,
            )  # fmt: skip
            session.add(n)
            session.flush()
            session.add(NotificationAttempt(notification_id=n.id, at=start, ok=True))
            names[f"notification.{name}"] = n.id
        for name, case_id in (("case", c["in_action_50"].id), ("none", None), ("held", c["resolved_50"].id)):
            names[f"audit.{name}"] = audit.record(
                session, u["op50"].id, "case_viewed", case_id=case_id, clock=lambda: start
            ).id
        # Legal holds, set by heads of the cases' offices (head50 is made a head at central too).
        session.add(RoleAssignment(user_id=u["head50"].id, office_id=s.offices["central"].id, role=Role.HEAD))
        session.flush()
        for key in HELD:
            set_hold(session, c[key], u["head50"], "คดีอยู่ระหว่างการสอบสวน", clock=lambda: start)
        caseless_id = caseless.id
    twilio = TwilioRest(media.base_url, ACCOUNT_SID, AUTH_TOKEN)
    try:
        yield World(db, media, twilio, start, Clock(start), names, caseless_id)
    finally:
        media.close()
        db.dispose()


def state(w: World) -> dict[str, Any]:
    """Every fact retention may change, by name: numbers, paths, files, transcripts, Twilio, rows."""
    out: dict[str, Any] = {}
    with w.db.session() as session:
        for case in session.scalars(select(Case)):
            key = case.reference
            call = session.get(Call, case.call_id) if case.call_id else None
            out[f"{key}.case_number"] = case.callback_number_enc is not None
            out[f"{key}.call_number"] = bool(call and call.caller_number_enc)
            out[f"{key}.path"] = session.scalar(select(func.count()).where(CallEvent.call_id == case.call_id))
            out[f"{key}.tombstones"] = sorted(
                e.detail["what"]
                for e in session.scalars(
                    select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.action == TOMBSTONE)
                )
            )
            out[f"{key}.summary"] = case.summary
            for rec in session.scalars(select(Recording).where(Recording.case_id == case.id)):
                transcript = session.scalar(select(Transcript).where(Transcript.recording_id == rec.id))
                out[f"{key}.file"] = bool(rec.stored_path) and Path(rec.stored_path or "").exists()
                out[f"{key}.transcript"] = transcript is not None and transcript.text is not None
                out[f"{key}.twilio_deleted"] = rec.deleted_at_twilio is not None
        caseless = session.get_one(Call, w.caseless_call)
        out["caseless.number"] = caseless.caller_number_enc is not None
        out["caseless.path"] = session.scalar(select(func.count()).where(CallEvent.call_id == caseless.id))
        for name, row_id in w.names.items():
            model = Notification if name.startswith("notification") else AuditEvent
            out[name] = session.get(model, row_id) is not None
        out["attempts"] = session.scalar(select(func.count()).select_from(NotificationAttempt))
    return out


def refs(w: World) -> list[str]:
    """Every case's reference (the keys of `state`)."""
    with w.db.session() as session:
        return list(session.scalars(select(Case.reference)))


def _ref(w: World, case_filter: Any) -> str:
    with w.db.session() as session:
        return session.scalars(select(Case.reference).where(case_filter)).one()


def test_each_period_erases_exactly_its_kind_and_legal_hold_keeps_a_case_whole(world: World) -> None:
    w = world
    by_note = {  # the seed's cases by what the test knows of them
        "draft_central": _ref(w, Case.legal_hold_at.is_not(None) & (Case.status == "draft")),
        "draft_50": _ref(w, Case.legal_hold_at.is_(None) & (Case.status == "draft")),
        "resolved_50": _ref(w, Case.legal_hold_at.is_not(None) & (Case.status == "resolved")),
        "in_action_50": _ref(w, Case.legal_hold_at.is_(None) & (Case.status == "resolved")),
    }
    by_note["routed_50"] = _closed_callback_case(w)
    expected = state(w)
    assert expected[f"{by_note['in_action_50']}.file"] and expected[f"{by_note['draft_central']}.file"]

    def step(day: int, changes: dict[str, Any]) -> None:
        w.at_day(day)
        w.sweep().sweep()
        for name, value in changes.items():
            assert name in expected, name
            expected[name] = value
        assert state(w) == expected, f"day {day}"

    step(6, {})  # nothing is past its period yet (the seed's cases are three days older than `start`)
    ref = by_note
    step(
        11,
        {
            f"{ref['routed_50']}.case_number": False,
            f"{ref['routed_50']}.call_number": False,
            f"{ref['routed_50']}.tombstones": ["caller_number"],
            f"{ref['draft_50']}.call_number": False,  # anonymous: its call's number
            f"{ref['draft_50']}.tombstones": ["caller_number"],
            "caseless.number": False,
        },
    )
    step(21, {f"{ref['draft_50']}.path": 0, f"{ref['draft_50']}.tombstones": ["caller_number", "draft"]})
    assert w.media.requests("DELETE") == []
    step(
        31,
        {
            f"{ref['in_action_50']}.file": False,
            f"{ref['in_action_50']}.transcript": False,
            f"{ref['in_action_50']}.twilio_deleted": True,
            f"{ref['in_action_50']}.tombstones": ["recording"],
        },
    )
    assert [path.rsplit("/", 1)[-1] for _, path in w.media.requests("DELETE")] == [
        _sid(w, ref["in_action_50"]) + ".json"
    ]
    held = {ref[k] for k in HELD}
    paths = {k: 0 for k in expected if k.endswith(".path") and k.split(".")[0] not in held}
    tomb = {
        f"{r}.tombstones": sorted([*expected[f"{r}.tombstones"], "call_events"])
        for r in refs(w)
        if r not in held and expected[f"{r}.path"]
    }
    step(41, {**paths, **tomb})
    step(51, {"notification.sent": False, "attempts": 2})
    step(61, {"audit.case": False, "audit.none": False})
    # Long after every period, the held cases are still whole: number, path, file, transcript, Twilio copy.
    step(400, {})
    for key in HELD:
        r = ref[key]
        assert expected[f"{r}.call_number"] and expected[f"{r}.path"] and expected[f"{r}.tombstones"] == []
    assert expected[f"{ref['draft_central']}.file"] and not expected[f"{ref['draft_central']}.twilio_deleted"]
    assert expected["notification.held"] and expected["audit.held"] and expected["notification.pending"]


def _sid(w: World, reference: str) -> str:
    with w.db.session() as session:
        return session.scalars(
            select(Recording.recording_sid)
            .join(Case, Case.id == Recording.case_id)
            .where(Case.reference == reference)
        ).one()


def test_plan_counts_by_kind_and_office_and_changes_nothing(world: World) -> None:
    w = world
    before = state(w)
    with w.db.session() as session:
        rows = plan(session, w.start + timedelta(days=61), SETTINGS)
    got = {(r.kind, r.office): r.count for r in rows}
    assert got[("recordings", "50")] == 1
    assert got[("drafts", "50")] == 1  # draft_50; draft_central is held
    assert ("drafts", "central") not in got
    # routed_50 (callback closed) and the call that never became a case; draft_50 is counted as a draft.
    assert got[("caller_numbers", "50")] == 1 and got[("caller_numbers", "-")] == 1
    assert got[("notifications", "50")] == 1
    assert got[("audit", "-")] == 1 and got[("audit", "50")] == 1
    assert state(w) == before


def test_a_crash_mid_sweep_loses_nothing_and_the_next_run_finishes(world: World) -> None:
    w = world
    w.at_day(400)
    batches = 0

    def crash_in_the_second_batch(kind: str) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        w.sweep(on_batch=crash_in_the_second_batch).sweep()
    half = state(w)
    # The first batch (drafts: draft_50) is whole; the second (routed_50's number) rolled back whole.
    draft = _ref(w, Case.legal_hold_at.is_(None) & (Case.status == "draft"))
    assert half[f"{draft}.path"] == 0 and not half[f"{draft}.call_number"]
    assert half[f"{draft}.tombstones"] == ["draft"]
    routed = _closed_callback_case(w)
    assert half[f"{routed}.case_number"] and half[f"{routed}.call_number"]
    assert half[f"{routed}.tombstones"] == []
    assert half["caseless.number"] and half["notification.sent"] and half["audit.case"]
    w.sweep().sweep()
    done = state(w)
    assert not done["caseless.number"] and not done["notification.sent"] and not done["audit.case"]
    assert not done[f"{routed}.case_number"] and not done[f"{routed}.call_number"]
    assert done[f"{draft}.tombstones"] == ["draft"]  # erased once, not twice
    assert done[f"{routed}.tombstones"] == ["call_events", "caller_number"]


class KilledBeforeFiles(RetentionSweep):
    """A worker killed after the recordings' batch committed, before their files and Twilio copies went."""

    def finish_recordings(self, report: Any) -> tuple[int, int]:
        raise RuntimeError("worker killed")


def test_a_crash_between_a_recordings_rows_and_its_file_is_finished_next_run(world: World) -> None:
    w = world
    w.at_day(31)
    with pytest.raises(RuntimeError):
        KilledBeforeFiles(w.db, SETTINGS, w.twilio, clock=w.clock).sweep()
    ref = _ref(w, Case.legal_hold_at.is_(None) & (Case.status == "resolved"))
    half = state(w)
    assert not half[f"{ref}.transcript"] and half[f"{ref}.file"] and not half[f"{ref}.twilio_deleted"]
    assert w.media.requests("DELETE") == []
    w.sweep().sweep()
    done = state(w)
    assert not done[f"{ref}.file"] and done[f"{ref}.twilio_deleted"]
    assert len(w.media.requests("DELETE")) == 1
    assert done[f"{ref}.tombstones"] == ["recording"]  # the row's step is not done twice


def test_twilio_refusing_the_delete_is_a_fault_and_is_asked_again(world: World) -> None:
    w = world
    w.at_day(31)
    sid = _sid(w, _ref(w, Case.legal_hold_at.is_(None) & (Case.status == "resolved")))
    w.media.inject(sid, "http500", method="DELETE")
    report = SweepReport()
    w.sweep().sweep(report)
    assert report.counts["twilio_failed"] == 1 and report.faults
    assert sid not in " ".join(report.faults)  # the line names the row id, not Twilio's SID
    w.sweep().sweep()
    assert len(w.media.requests("DELETE")) == 2
    with w.db.session() as session:
        assert (
            session.scalars(select(Recording).where(Recording.recording_sid == sid)).one().deleted_at_twilio
        )


def _closed_callback_case(w: World) -> str:
    with w.db.session() as session:
        return session.scalars(
            select(Case.reference)
            .join(Callback, Callback.case_id == Case.id)
            .where(Callback.closed_at.is_not(None))
        ).one()


ONE_DAY = "caller_numbers: 1\nrecordings: 1\ncall_events: 1\nnotifications: 1\naudit: 1\ndrafts: 1\n"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    retention = tmp_path / "retention.yaml"
    retention.write_text(ONE_DAY, encoding="utf-8")
    return make_config(tmp_path, env={"HOTLINE_RETENTION_FILE": str(retention)})


def test_the_plan_command_prints_counts_by_kind_and_office_and_no_personal_data(app: Flask) -> None:
    with get_database(app).session() as session:
        s = seed_console(session, cipher=FieldCipher(app.config["HOTLINE"].data_key))
        numbers = [
            FieldCipher(app.config["HOTLINE"].data_key).decrypt(c.callback_number_enc)
            for c in s.cases.values()
            if c.callback_number_enc
        ]
        events = session.scalar(select(func.count()).select_from(CallEvent))
    done = app.test_cli_runner().invoke(args=["retention", "plan"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    # Every kind is listed with its period, then its offices; the seed's drafts are at the central office.
    assert [line.split(" (")[0] for line in lines if not line.startswith(" ")] == list(KINDS)
    assert lines[:3] == ["drafts (after 1 days): 2", "  office 50: 1", "  office central: 1"]
    # Anonymous resolved_50's number (draft_50's is the drafts'); the other seven cases' menu paths.
    assert lines[3:5] == ["caller_numbers (after 1 days): 1", "  office 50: 1"]
    assert "call_events (after 1 days): 7" in lines
    assert not any(n[3:] in done.output for n in numbers)
    assert "นักเรียน" not in done.output  # no transcript or summary words
    with get_database(app).session() as session:
        assert session.scalar(select(func.count()).select_from(CallEvent)) == events  # nothing changed


def test_the_worker_sweeps_once_a_night_at_sweep_at_in_local_time(world: World) -> None:
    night = RetentionSettings(**{**SETTINGS.__dict__, "sweep_at": time(2, 30)})
    sweep = RetentionSweep(world.db, night, world.twilio, clock=world.clock)
    scheduler = build_scheduler("Asia/Bangkok", [Sweep.daily("cases.retention", sweep.sweep, night.sweep_at)])
    job = scheduler.get_job("cases.retention")
    assert isinstance(job.trigger, CronTrigger)
    bangkok = ZoneInfo("Asia/Bangkok")
    now = datetime(2027, 3, 10, 17, 0, tzinfo=UTC)  # 00:00 on the 11th in Bangkok
    fires = [job.trigger.get_next_fire_time(None, now)]
    for _ in range(2):
        fires.append(job.trigger.get_next_fire_time(fires[-1], fires[-1] + timedelta(seconds=1)))
    assert [f.astimezone(bangkok).strftime("%d %H:%M") for f in fires] == ["11 02:30", "12 02:30", "13 02:30"]
    assert all(f == night.next_sweep(f - timedelta(minutes=1), bangkok) for f in fires)  # what the page shows
