"""The database, its WAL and SHM, the secrets and the data dir are the service account's alone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from infra.db import Database
from migrations import upgrade_database

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.sqlite_only


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that keeps nothing private: the modes below must not come from the umask."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_instance_is_private_from_the_first_command(tmp_path: Path) -> None:
    instance = tmp_path / "srv" / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "TWILIO_", "DATABASE_URL"))}
    env["HOTLINE_INSTANCE_DIR"] = str(instance)
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.umask(0o022),  # as a shell would start it
    )
    assert done.returncode == 0, done.stderr
    assert mode(instance.parent) == 0o700  # a missing parent too
    assert mode(instance) == 0o700
    assert mode(instance / "data") == 0o700
    assert mode(instance / "local-secrets.json") == 0o600
    assert mode(instance / "hotline.db") == 0o600


def test_wal_and_shm_take_the_database_file_mode(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "hotline.db"
    upgrade_database(f"sqlite:///{path}")  # creates the file, as `db upgrade` does
    assert mode(path) == 0o600
    db = Database(f"sqlite:///{path}")
    try:
        with db.writing() as session:  # open: the WAL and SHM exist while a connection does
            session.execute(text("CREATE TABLE probe (x INTEGER)"))
        companions = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-write.lock")]
        assert {p.name: mode(p) for p in companions} == {p.name: 0o600 for p in companions}
    finally:
        db.dispose()


def test_an_older_runs_readable_files_are_made_private_when_opened(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "hotline.db"
    upgrade_database(f"sqlite:///{path}")
    # As before this change: SQLite made the database 0644, and its WAL took the same mode.
    os.chmod(path, 0o644)
    wal = Path(f"{path}-wal")
    wal.touch(mode=0o644)
    os.chmod(wal, 0o644)
    db = Database(f"sqlite:///{path}")
    try:
        with db.reading() as conn:
            conn.execute(text("SELECT 1"))
        assert mode(path) == 0o600
        assert mode(wal) == 0o600
        assert mode(Path(f"{path}-shm")) == 0o600
    finally:
        db.dispose()
