"""Reminders sent by real `flask --app app worker` processes: exactly once across a SIGKILL, and with two.

Reminder rows are made directly (one AT_DUE reminder per case, due a fraction of a second apart), so
that many fall due over a few seconds of real time while the worker runs; the worker reads a copy of
the shipped callbacks file in which a reminder is late one second after its time.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from app import get_database
from cases.models import (
    Callback,
    CallbackChoice,
    CallbackState,
    Case,
    CaseStatus,
    Channel,
    HazardGroup,
    Notification,
    Office,
    Reminder,
    ReminderKind,
)
from cases.reference import new_reference
from infra.clock import utcnow
from infra.config import DEFAULT_CALLBACKS_FILE, Config
from infra.crypto import FieldCipher
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE, on_postgresql
from tests.integration.test_worker import ROOT, WorkerProcess, wait_for
from tests.support.seed import PROVINCE, seed_console

pytestmark = pytest.mark.slow
SENT_LOG = re.compile(r"reminders: (\d+) sent")
# Chiang Mai's SC-Operators and head (tests.support.seed): each reminder is one console message to each.
RECIPIENTS = 3
SLOW_SEND_FUNCTION = """
CREATE FUNCTION slow_send() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.02);
    RETURN NEW;
END $$"""
SLOW_SEND_TRIGGER = """
CREATE TRIGGER slow_send BEFORE UPDATE ON reminders FOR EACH ROW
WHEN (NEW.sent_at IS NOT NULL AND OLD.sent_at IS NULL)
EXECUTE FUNCTION slow_send()"""


def callbacks_file(folder: Path) -> Path:
    """The shipped settings, but a reminder counts as late one second after its time."""
    text = DEFAULT_CALLBACKS_FILE.read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^late_after_seconds: *\d+", "late_after_seconds: 1", text)
    assert n == 1
    path = folder / "callbacks.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def env_for(config: Config, settings: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "HOTLINE_", "FLASK_", "DATABASE"))
    }
    env.update(
        HOTLINE_INSTANCE_DIR=str(config.instance_dir),
        DATABASE_URL=config.database_url,
        PUBLIC_BASE_URL=PUBLIC_BASE,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        HOTLINE_SWEEP_SECONDS="0.5",
        HOTLINE_TRANSCRIBERS="1",
        HOTLINE_ENGINE_TH="vosk",  # no Whisper model to join and load: these tests are about reminders
        HOTLINE_CALLBACKS_FILE=str(settings),
        PYTHONPATH=str(ROOT),
    )
    return env


def seed_staff(app: Flask, config: Config) -> None:
    with get_database(app).session() as s:
        seed_console(s, cipher=FieldCipher(config.data_key))


def due_reminders(app: Flask, first: datetime, count: int, step_s: float) -> list[int]:
    """`count` routed cases at Chiang Mai, each with an open callback and one reminder due in turn."""
    with get_database(app).session() as s:
        office = s.scalar(select(Office).where(Office.code == PROVINCE))
        assert office is not None
        ids = []
        for i in range(count):
            due = first + timedelta(seconds=i * step_s)
            case = Case(
                reference=new_reference(),
                status=CaseStatus.ROUTED,
                category=HazardGroup.VIOLENCE,
                ivr_category=HazardGroup.VIOLENCE,
                language="th",
                province_code=PROVINCE,
                office_id=office.id,
                callback_choice=CallbackChoice.CALLER,
                callback_number_masked="08X-XXX-X" + str(secrets.randbelow(900) + 100),
                created_at=due - timedelta(hours=1),
            )
            s.add(case)
            s.flush()
            callback = Callback(
                case_id=case.id,
                office_id=office.id,
                state=CallbackState.PENDING,
                due_at=due,
                first_due_at=due,
            )
            s.add(callback)
            s.flush()
            reminder = Reminder(
                callback_id=callback.id,
                case_id=case.id,
                kind=ReminderKind.AT_DUE,
                due_at=due,
                office_id=office.id,
            )
            s.add(reminder)
            s.flush()
            ids.append(reminder.id)
        return ids


def sent_count(app: Flask) -> int:
    with get_database(app).session() as s:
        return int(
            s.scalar(select(func.count()).select_from(Reminder).where(Reminder.sent_at.is_not(None))) or 0
        )


def assert_each_sent_once(app: Flask, ids: list[int]) -> list[Reminder]:
    with get_database(app).session() as s:
        reminders = list(s.scalars(select(Reminder).where(Reminder.id.in_(ids)).order_by(Reminder.id)))
        assert [r.id for r in reminders if r.sent_at is None] == []
        per_reminder = dict(
            s.execute(
                select(Notification.reminder_id, func.count())
                .where(Notification.reminder_id.in_(ids))
                .group_by(Notification.reminder_id)
            ).all()
        )
        assert per_reminder == dict.fromkeys(ids, RECIPIENTS)
        duplicates = s.execute(
            select(Notification.reminder_id, Notification.channel, Notification.user_id, func.count())
            .where(Notification.reminder_id.is_not(None))  # routing the cases also alerted (test_alerts)
            .group_by(Notification.reminder_id, Notification.channel, Notification.user_id)
            .having(func.count() > 1)
        ).all()
        assert duplicates == []
        channels = set(s.scalars(select(Notification.channel).where(Notification.reminder_id.in_(ids))))
        assert channels == {Channel.CONSOLE}
        return reminders


def test_a_worker_killed_while_reminders_fall_due_sends_each_once_after_restart(
    app: Flask, config: Config, tmp_path: Path
) -> None:
    seed_staff(app, config)
    env = env_for(config, callbacks_file(tmp_path))
    worker = WorkerProcess.start(env, tmp_path / "worker-1.log")
    try:
        # 120 reminders falling due every 50 ms from one second on: six seconds of them.
        ids = due_reminders(app, utcnow() + timedelta(seconds=1), 120, 0.05)
        wait_for("a third of the reminders", lambda: sent_count(app) >= 40, worker=worker, timeout=60)
    finally:
        worker.proc.kill()  # SIGKILL: no clean-up, whatever transaction was open is lost
        worker.proc.wait(timeout=30)
    killed_at = utcnow()
    sent_before = sent_count(app)
    assert sent_before < len(ids), "the worker finished before it was killed: nothing to test"
    with get_database(app).session() as s:
        last_due = s.scalar(select(func.max(Reminder.due_at)).where(Reminder.id.in_(ids)))
    assert last_due is not None
    # Down until every reminder is due and well past its time.
    time.sleep(max((last_due - utcnow()).total_seconds(), 0) + 2.0)
    restarted_at = utcnow()
    worker = WorkerProcess.start(env, tmp_path / "worker-2.log")
    try:
        wait_for("every reminder", lambda: sent_count(app) == len(ids), worker=worker, timeout=60)
    finally:
        code = worker.stop()
    assert code == 0, worker.text()

    reminders = assert_each_sent_once(app, ids)
    first_run = [r for r in reminders if r.sent_at is not None and r.sent_at < killed_at]
    down = [r for r in reminders if killed_at + timedelta(seconds=0.5) < r.due_at < restarted_at]
    assert len(first_run) == sent_before
    assert down, "no reminder fell due while the worker was down"
    # What fell due while it was down went out once, after the restart, marked late; the rest on time.
    assert all(r.late and r.sent_at is not None and r.sent_at >= restarted_at for r in down)
    assert sum(not r.late for r in first_run) >= len(first_run) * 0.9
    late_bodies = [
        n.body
        for n in _notifications(app, [r.id for r in down])
        if n.channel == Channel.CONSOLE and "ส่งช้ากว่ากำหนด" in n.body
    ]
    assert len(late_bodies) == len(down) * RECIPIENTS


def test_two_workers_send_one_hundred_due_reminders_exactly_one_hundred_times(
    app: Flask, config: Config, tmp_path: Path
) -> None:
    seed_staff(app, config)
    if on_postgresql():
        # Widen the race: every row a worker marks sent takes 20 ms, so the two workers' batches overlap
        # in time and only the row locks (FOR UPDATE SKIP LOCKED) keep them apart.
        with get_database(app).engine.begin() as conn:
            conn.exec_driver_sql(SLOW_SEND_FUNCTION)
            conn.exec_driver_sql(SLOW_SEND_TRIGGER)
    env = env_for(config, callbacks_file(tmp_path))
    workers = [WorkerProcess.start(env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    try:
        # 100 reminders due over three seconds: each tick of either worker finds some newly due.
        ids = due_reminders(app, utcnow() + timedelta(seconds=0.5), 100, 0.03)
        for worker in workers:
            wait_for("every reminder", lambda: sent_count(app) == len(ids), worker=worker, timeout=60)
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0, 0], [w.text() for w in workers]
    assert_each_sent_once(app, ids)
    sends = [sum(int(n) for n in SENT_LOG.findall(w.text())) for w in workers]
    assert sum(sends) == len(ids), sends  # exactly one hundred sends between them
    assert all(sends), f"one worker did all the work: {sends}"


def _notifications(app: Flask, reminder_ids: list[int]) -> list[Notification]:
    with get_database(app).session() as s:
        return list(s.scalars(select(Notification).where(Notification.reminder_id.in_(reminder_ids))))
