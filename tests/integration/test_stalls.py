"""A database that stalls or goes away mid-call: every webhook answers in time and nothing is lost.

Twilio waits 15 s for a webhook and then drops the caller. With the database locked from outside, its
file gone, or its server stopped, each webhook must answer within its budget (HOTLINE_WEBHOOK_DB_SECONDS;
here 1 s so the tests stay quick), keep what Twilio sent in the spool, and once the database is back the
worker's replay must turn it into the same case the live requests would have made: the message, the
caller's number and their callback choice kept.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import make_url, select, text
from sqlalchemy.exc import OperationalError

from app import create_app, get_database, upgrade_database
from cases.models import Call, Case
from cases.offices import load_offices
from infra import db as infra_db
from infra.config import Config
from infra.db import Database
from infra.deadline import Breaker
from telephony import jobs
from telephony.webhooks import db_breaker, telephony
from tests.conftest import TwilioCaller, make_config
from tests.integration.test_webhooks import FULL_CALL, Recorded, Twiml, answer, flow_of, walk
from tests.support.ports import free_port
from transcription.models import Recording

BUDGET_S = 2.0
# Twilio's own patience is 15 s; a webhook that answers within its budget plus a little has kept the
# caller. This is a bound for a hang, not a speed target (bench/stalls.py measures the real figures).
WELL_INSIDE_TWILIO_S = 6.0
CALLER = "+66812345678"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """conftest's configuration with a short database budget (conftest's `app` is built from it)."""
    return make_config(tmp_path, env={"HOTLINE_WEBHOOK_DB_SECONDS": str(BUDGET_S)})


@pytest.fixture
def caller(app: Flask) -> TwilioCaller:
    return TwilioCaller(app.test_client(), "CA" + os.urandom(16).hex(), CALLER)


def timed(post: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = post()
    return result, time.monotonic() - started


@contextmanager
def write_lock_held(app: Flask) -> Iterator[None]:
    """Another program holds the database's write lock (SQLite) or locks the tables (PostgreSQL)."""
    url = get_database(app).url
    if url.startswith("sqlite"):
        conn = sqlite3.connect(str(make_url(url).database), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("LOCK TABLE calls, recordings, cases IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def spooled(config: Config) -> list[dict[str, str]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(config.spool_dir.glob("*.json"))]


def replay(app: Flask) -> int:
    return jobs.replay_spool(get_database(app), telephony(app))


def the_case(app: Flask, call_sid: str) -> Case:
    with get_database(app).session() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None
        case = session.scalar(select(Case).where(Case.call_id == call.id))
        assert case is not None, "no case for the call"
        _ = case.recordings, case.call, case.office
        return case


def _message_sids(app: Flask, case: Case) -> list[str]:
    with get_database(app).session() as session:
        return list(
            session.scalars(
                select(Recording.recording_sid).where(Recording.case_id == case.id).order_by(Recording.id)
            )
        )


# ---- the write lock held from outside (SQLite: another program; PostgreSQL: another connection) ----


def test_a_message_recorded_while_the_database_is_locked_is_kept_with_the_callback(
    app: Flask, caller: TwilioCaller
) -> None:
    config: Config = app.config["HOTLINE"]
    record = walk(caller, *FULL_CALL)  # violence, Bangkok, call back this number: saved before the stall
    rec = Recorded(digits="#")
    with write_lock_held(app):
        thanks, took = timed(lambda: answer(caller, record, rec))
        assert took < WELL_INSIDE_TWILIO_S
        # The caller already spoke: thanked for the message, not asked to say it again.
        assert thanks.verbs() == ["Say", "Hangup"]
        assert thanks.says() == [flow_of(app).rescue.thanks.text["th"]]
        status, took = timed(lambda: caller.post("/twilio/status", CallStatus="completed", CallDuration="50"))
        assert status.status_code == 200 and took < WELL_INSIDE_TWILIO_S
        form = {k: v for k, v in rec.form().items() if k != "Digits"}
        rstatus, took = timed(
            lambda: caller.post("/twilio/recording-status", RecordingStatus="completed", **form)
        )
        assert rstatus.status_code == 200 and took < WELL_INSIDE_TWILIO_S
    kept = spooled(config)
    assert sorted(k["kind"] for k in kept) == ["call_status", "message", "recording_status"]
    raw = "".join(p.read_text() for p in config.spool_dir.glob("*.json"))
    assert "812345678" not in raw  # the number is there only encrypted
    assert all(k["caller_enc"] for k in kept)

    assert replay(app) == 3
    assert spooled(config) == []
    case = the_case(app, caller.call_sid)
    assert _message_sids(app, case) == [rec.sid]
    assert case.callback_requested and case.callback_number_masked == "+66 8x xxx x678"
    assert (case.category, case.office.code) == ("violence", "10")
    with get_database(app).session() as session:
        call = session.scalar(select(Call).where(Call.call_sid == caller.call_sid))
        assert call is not None and call.ended_at is not None and call.status == "completed"
    assert replay(app) == 0  # nothing twice


def test_a_call_that_starts_while_the_database_is_locked_leaves_a_message(
    app: Flask, caller: TwilioCaller
) -> None:
    with write_lock_held(app):
        rescue, took = timed(lambda: Twiml(caller.post("/twilio/voice")))
        assert took < WELL_INSIDE_TWILIO_S
        assert rescue.verbs() == ["Say", "Record", "Say", "Hangup"]  # the rescue prompt takes a message
        rec = Recorded(duration=25)
        thanks, took = timed(lambda: Twiml(caller.post(rescue.action("Record"), **rec.form())))
        assert took < WELL_INSIDE_TWILIO_S and thanks.verbs() == ["Say", "Hangup"]
        caller.post("/twilio/status", CallStatus="completed", CallDuration="40")
    assert replay(app) == 2
    case = the_case(app, caller.call_sid)
    assert case.opened_by == "rescue" and _message_sids(app, case) == [rec.sid]
    assert case.call is not None and case.call.caller_number_masked == "+66 8x xxx x678"


def test_a_key_press_while_the_database_is_locked_goes_to_the_rescue_prompt(
    app: Flask, caller: TwilioCaller
) -> None:
    menu = walk(caller)
    with write_lock_held(app):
        rescue, took = timed(lambda: answer(caller, menu, "1"))
        assert took < WELL_INSIDE_TWILIO_S
        assert rescue.verbs() == ["Say", "Record", "Say", "Hangup"]
    assert spooled(app.config["HOTLINE"]) == []  # a key alone is nothing to keep
    # Once the lock is gone the call goes on as before.
    assert answer(caller, menu, "1").find("Gather") is not None


# ---- the SQLite file gone (a lost volume) -------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_missing_database_file_is_never_recreated_and_the_message_is_kept(
    app: Flask, caller: TwilioCaller
) -> None:
    db_file = Path(str(make_url(get_database(app).url).database))
    record = walk(caller, *FULL_CALL)
    moved = db_file.with_suffix(".away")
    db_file.rename(moved)
    try:
        rec = Recorded(digits="hangup")
        thanks, took = timed(lambda: answer(caller, record, rec))
        assert took < WELL_INSIDE_TWILIO_S
        assert thanks.verbs() == ["Say", "Hangup"]
        assert not db_file.exists(), "an empty database was created in place of the missing one"
        status = caller.post("/twilio/status", CallStatus="completed", CallDuration="50")
        assert status.status_code == 200
        assert replay(app) == 0  # still gone: the files wait
        assert len(spooled(app.config["HOTLINE"])) == 2
    finally:
        moved.rename(db_file)
    assert replay(app) == 2
    case = the_case(app, caller.call_sid)
    assert _message_sids(app, case) == [rec.sid]
    assert case.callback_requested and case.callback_number_masked == "+66 8x xxx x678"


# ---- a PostgreSQL server stopped mid-call (its own cluster: stopping the suite's would stop the suite) ----


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A private PostgreSQL cluster: its URL, and functions that stop and start it."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    assert bins, "PostgreSQL is not installed (./hotline test installs it)"
    pg = bins[-1]
    # Outside pytest's tmp tree, whose folders only root may enter: the server runs as postgres.
    home = Path(tempfile.mkdtemp(prefix="hotline-pg-"))
    data = home / "data"
    data.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        for folder in (home, data):
            shutil.chown(folder, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, str(pg / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    opts = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"

    def start() -> None:
        subprocess.run(
            [
                *run_as,
                str(pg / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-w",
                "-l",
                str(home / "pg.log"),
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def stop() -> None:
        subprocess.run(
            [*run_as, str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            check=True,
            capture_output=True,
        )

    start()
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE hotline")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/hotline", stop, start
    finally:
        subprocess.run(
            [*run_as, str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def test_a_postgresql_stopped_mid_call_keeps_the_message_and_the_callback(
    tmp_path: Path, own_postgres: tuple[str, Callable[[], None], Callable[[], None]]
) -> None:
    url, stop, start = own_postgres
    upgrade_database(url)
    config = make_config(
        tmp_path / "app", env={"DATABASE_URL": url, "HOTLINE_WEBHOOK_DB_SECONDS": str(BUDGET_S)}
    )
    app = create_app(config)
    app.testing = True
    try:
        with get_database(app).session() as session:
            load_offices(session)
        caller = TwilioCaller(app.test_client(), "CA" + os.urandom(16).hex(), CALLER)
        record = walk(caller, "1", "50", "1", "1")  # violence, Chiang Mai, call back this number
        stop()
        rec = Recorded(digits="hangup")
        thanks, took = timed(lambda: answer(caller, record, rec))
        assert took < WELL_INSIDE_TWILIO_S and thanks.verbs() == ["Say", "Hangup"]
        status, took = timed(lambda: caller.post("/twilio/status", CallStatus="completed", CallDuration="9"))
        assert status.status_code == 200 and took < WELL_INSIDE_TWILIO_S
        assert replay(app) == 0  # the server is still down: nothing is lost, the files wait
        start()
        assert replay(app) == 2
        case = the_case(app, caller.call_sid)
        assert _message_sids(app, case) == [rec.sid]
        assert case.callback_requested and case.office.code == "50"
    finally:
        get_database(app).dispose()


# ---- many calls in one stall: the server's threads must not queue them past Twilio's patience ------


def test_after_one_miss_the_next_webhooks_try_the_database_only_briefly(
    app: Flask, new_caller: Callable[..., TwilioCaller]
) -> None:
    breaker: Breaker = db_breaker(app)
    callers = [new_caller() for _ in range(3)]
    menus = [walk(c) for c in callers]
    with write_lock_held(app):
        _first, took_first = timed(lambda: answer(callers[0], menus[0], "1"))
        assert took_first >= BUDGET_S * 0.9  # it waited its whole budget for the lock
        assert breaker.tripped
        for caller, menu in zip(callers[1:], menus[1:], strict=True):
            rescue, took = timed(lambda c=caller, m=menu: answer(c, m, "1"))
            assert rescue.verbs() == ["Say", "Record", "Say", "Hangup"]
            # A stall holds a server thread for breaker.short_s, not the whole budget.
            assert took < (breaker.short_s + BUDGET_S) / 2
    # The database is back: the next request waits as long as it needs and closes the breaker.
    assert answer(callers[1], menus[1], "1").find("Gather") is not None
    assert not breaker.tripped


# ---- a PostgreSQL restart under the pool: idle connections are pinged, busy ones fail once ----------


def test_pooled_postgresql_connections_survive_a_restart(
    own_postgres: tuple[str, Callable[[], None], Callable[[], None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, stop, start = own_postgres
    db = Database(url)
    try:
        with db.reading() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        stop()
        start()  # every pooled connection is now dead
        monkeypatch.setattr(infra_db, "PG_PING_AFTER_IDLE_S", 0.0)
        # Idle past the threshold: the ping finds the dead connection and the pool opens a new one.
        with db.reading() as conn:
            assert conn.execute(text("SELECT 2")).scalar() == 2
        stop()
        start()
        monkeypatch.setattr(infra_db, "PG_PING_AFTER_IDLE_S", 3600.0)
        # In use a moment ago, so not pinged: that one request fails (a webhook answers from the spool)
        # and the pool drops its older connections, so the next request gets a fresh one.
        with pytest.raises(OperationalError), db.reading() as conn:
            conn.execute(text("SELECT 3"))
        with db.reading() as conn:
            assert conn.execute(text("SELECT 4")).scalar() == 4
    finally:
        db.dispose()
