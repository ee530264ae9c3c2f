"""The SQLite write gate: writers of one database file queue across threads, databases and processes."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import pytest
from sqlalchemy import text

from infra.db import Database, _WriteGate

pytestmark = pytest.mark.sqlite_only


def test_a_writer_of_another_process_waits_its_turn_and_gets_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    sqlite3.connect(tmp_path / "x.db").close()  # the service opens a database; migrations create it
    # Two Database objects open the lock file twice, as two gunicorn workers do.
    first, second = Database(url), Database(url)
    try:
        with first.writing() as session:
            session.execute(text("CREATE TABLE t (n INTEGER)"))
        order: list[str] = []

        def write() -> None:
            with second.writing() as session:
                order.append("second")
                session.execute(text("INSERT INTO t VALUES (2)"))

        with first.writing() as session:
            session.execute(text("INSERT INTO t VALUES (1)"))
            waiter = threading.Thread(target=write)
            waiter.start()
            waiter.join(timeout=0.3)
            assert waiter.is_alive()  # queued at the gate, not inside a transaction of its own
            order.append("first done")
        waiter.join(timeout=5)
        assert not waiter.is_alive()
        assert order == ["first done", "second"]
        with first.reading() as conn:
            assert conn.execute(text("SELECT n FROM t ORDER BY n")).scalars().all() == [1, 2]
    finally:
        first.dispose()
        second.dispose()


def test_a_writer_gives_up_after_the_timeout(tmp_path: Path) -> None:
    holder, waiter = _WriteGate(str(tmp_path / "x.db"), 30), _WriteGate(str(tmp_path / "x.db"), 0.2)
    with holder, pytest.raises(TimeoutError, match="no turn to write"):
        waiter.__enter__()
    with waiter:  # free again once the holder is done, and the failed try left nothing held
        pass


def test_the_gate_nests_in_one_thread_and_locks_the_file_once(tmp_path: Path) -> None:
    gate, other = _WriteGate(str(tmp_path / "x.db"), 30), _WriteGate(str(tmp_path / "x.db"), 0.05)
    with gate:
        with gate:
            pass
        with pytest.raises(TimeoutError):
            other.__enter__()  # the inner exit did not let go of the file
    with other:
        pass


def test_without_a_lock_file_writers_still_go_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = _WriteGate(str(tmp_path / "missing" / "x.db"), 0.05)
    with caplog.at_level(logging.WARNING), gate:
        pass
    assert "no lock file for SQLite writers" in caplog.text


def test_a_forked_process_opens_a_lock_of_its_own(tmp_path: Path) -> None:
    gate = _WriteGate(str(tmp_path / "x.db"), 0.2)
    with gate:
        pass  # the lock file is open before the fork, as in an app built before gunicorn forks
    turn_read, turn_write = os.pipe()
    # Reason: the child only tries the gate and leaves with os._exit.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.read(turn_read, 1)  # the parent now holds the gate
        try:
            gate.__enter__()
        except TimeoutError:
            os._exit(0)  # it waited for the parent, as another process must
        os._exit(1)  # it shared the parent's lock: no exclusion between processes
    with gate:
        os.write(turn_write, b"x")
        deadline = time.monotonic() + 10
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    os.close(turn_read)
    os.close(turn_write)
    assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0
