"""Backups that restore: made while cases are written, restored into a fresh instance, checked whole."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import make_url, select

from app import create_app, get_database, upgrade_database
from backups.create import Source, create_backup
from backups.manifest import copy_private
from backups.schema import database_revision, head_revision, key_fingerprints
from cases.models import Case
from infra.config import LOCAL_SECRETS_FILE, Config
from infra.crypto import FieldCipher
from infra.files import make_private_dirs
from infra.sealed import RecordingCipher, new_recording_key
from tests.conftest import _created_databases, _pg_admin, make_config, on_postgresql
from tests.integration.test_console import login
from tests.support.seed import SEED_PASSWORD, seed_bulk_cases, seed_console, tone_wav
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


@pytest.fixture
def world(app: Flask, config: Config) -> dict[str, int]:
    """The console's seed world, its five recordings stored under the data dir; {key: recording id}."""
    with get_database(app).session() as session:
        seeded = seed_console(
            session,
            cipher=FieldCipher(config.data_key),
            recordings_dir=config.recordings_dir,
            recording_key=config.recording_key,
        )
        ids = {key: rec.id for key, rec in seeded.recordings.items()}
    return ids


class Writer(threading.Thread):
    """Writes a case, a stored recording (file first, as the worker does) and its transcript, in a loop."""

    def __init__(self, app: Flask, recordings_dir: Path) -> None:
        super().__init__(daemon=True)
        self.db, self.dir = get_database(app), recordings_dir
        self.rounds, self.stop, self.error = 0, threading.Event(), None  # type: Exception | None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.write_one()
                self.rounds += 1
        except Exception as exc:  # the test fails on it below
            self.error = exc

    def write_one(self) -> None:
        sid = "RE" + secrets.token_hex(16)
        path = self.dir / f"{sid}.wav"
        path.write_bytes(tone_wav(0.2) + secrets.token_bytes(16))
        with self.db.writing() as session:
            seed_bulk_cases(session, 1, start=10_000 + self.rounds, events_per_case=1)
            case_id = session.scalar(select(Case.id).order_by(Case.id.desc()).limit(1))
            rec = Recording(
                recording_sid=sid,
                call_sid="CA" + sid[2:],
                case_id=case_id,
                media_url=f"https://api.twilio.com/x/{sid}",
                status="completed",
                storage_status=StorageStatus.STORED,
                stored_path=str(path),
                size_bytes=path.stat().st_size,
            )
            session.add(rec)
            session.flush()
            session.add(
                Transcript(
                    recording_id=rec.id, status=TranscriptStatus.DONE, language="th", text=f"ข้อความ {sid}"
                )
            )

    def wait_for(self, rounds: int) -> None:
        while self.rounds < rounds and self.error is None and self.is_alive():
            threading.Event().wait(0.01)


def snapshot(url: str) -> dict[str, Any]:
    """Cases by reference, recordings by sid (stored path) and transcripts by recording sid."""
    with sqlite3.connect(str(make_url(url).database)) as conn:
        cases = {r[0]: r[1:] for r in conn.execute("SELECT reference, status, office_id FROM cases")}
        recs = dict(conn.execute("SELECT recording_sid, stored_path FROM recordings"))
        texts = dict(
            conn.execute(
                "SELECT r.recording_sid, t.text FROM transcripts t JOIN recordings r ON r.id = t.recording_id"
            )
        )
    conn.close()
    return {"cases": cases, "recordings": recs, "transcripts": texts}


@pytest.fixture
def fresh(tmp_path: Path, config: Config) -> Iterator[Flask]:
    """A second instance, never migrated, with the first one's data key (kept apart from its backups)."""
    cfg = make_config(tmp_path / "fresh", data_key=config.data_key, recording_key=config.recording_key)
    app = create_app(cfg)
    app.testing = True
    yield app
    get_database(app).dispose()


def _assert_private(backup: Path) -> None:
    for path in [backup, *backup.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


@pytest.mark.sqlite_only
def test_a_backup_made_while_cases_are_written_restores_whole(
    app: Flask, config: Config, world: dict[str, int], fresh: Flask, tmp_path: Path
) -> None:
    writer = Writer(app, config.recordings_dir)
    writer.start()
    writer.wait_for(3)
    before = writer.rounds
    result = cli(app, "backup", "create", str(tmp_path / "b1"))
    after = writer.rounds
    writer.wait_for(after + 3)
    writer.stop.set()
    writer.join()
    assert writer.error is None
    assert result.exit_code == 0, result.output
    backup = tmp_path / "b1"
    _assert_private(backup)
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["schema_revision"] == head_revision()
    assert manifest["data_key_fingerprint"] == key_fingerprints(config.data_key)[0]
    assert manifest["created_at"].endswith("Z") and manifest["hotline_version"]
    assert not any(LOCAL_SECRETS_FILE in name for name in manifest["files"])
    assert not list(tmp_path.glob(".b1.partial-*"))

    saved = snapshot(f"sqlite:///{backup / 'hotline.db'}")
    written = [ref for ref in saved["cases"] if ref.startswith("101")]  # the writer's bulk references
    # One consistent snapshot: every round finished before the backup began, none begun after it ended.
    assert before <= len(written) <= after + 1
    assert after > before, "the writer went on writing while the backup was made"
    assert set(saved["recordings"]) == set(saved["transcripts"])

    result = cli(fresh, "backup", "restore", str(backup))
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    cfg: Config = fresh.config["HOTLINE"]
    restored = snapshot(cfg.database_url)
    assert restored["cases"] == saved["cases"] and restored["transcripts"] == saved["transcripts"]
    assert set(restored["recordings"]) == set(saved["recordings"])
    for sid, old_path in saved["recordings"].items():
        new_path = Path(restored["recordings"][sid])
        assert new_path.is_relative_to(cfg.recordings_dir), sid
        assert new_path.read_bytes() == Path(old_path).read_bytes(), sid  # byte-identical

    # The app starts on the restored instance: health, sign-in, a case and its recording played.
    app2 = create_app(cfg)
    app2.testing = True
    client = app2.test_client()
    assert client.get("/healthz").status_code == 200
    assert login(client, "op50", SEED_PASSWORD).status_code == 302
    with client.get(f"/console/recordings/{world['routed_50']}/audio") as audio:
        assert audio.status_code == 200
        stored = Path(saved["recordings"][_sid(app, world)])
        assert audio.get_data() == RecordingCipher(config.recording_key).read_all(stored)
    get_database(app2).dispose()


def _sid(app: Flask, world: dict[str, int]) -> str:
    with get_database(app).session() as session:
        rec = session.get(Recording, world["routed_50"])
        assert rec is not None
        return rec.recording_sid


@pytest.fixture
def backup(app: Flask, world: dict[str, int], tmp_path: Path) -> Path:
    result = cli(app, "backup", "create", str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    return tmp_path / "b"


def _untouched(fresh: Flask) -> None:
    cfg: Config = fresh.config["HOTLINE"]
    assert not list(cfg.recordings_dir.rglob("*"))
    if cfg.is_sqlite:
        assert not Path(str(make_url(cfg.database_url).database)).exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove", "extra"])
def test_a_damaged_or_incomplete_backup_is_refused_naming_the_file(
    backup: Path, fresh: Flask, damage: str
) -> None:
    recording = sorted((backup / "data" / "recordings").iterdir())[0]
    rel = recording.relative_to(backup).as_posix()
    if damage == "flip":
        body = bytearray(recording.read_bytes())
        body[100] ^= 0x01
        recording.write_bytes(bytes(body))
    elif damage == "truncate":
        recording.write_bytes(recording.read_bytes()[:-1])
    elif damage == "remove":
        recording.unlink()
    else:
        rel = "data/recordings/REextra.wav"
        (backup / rel).write_bytes(b"RIFF")
    result = cli(fresh, "backup", "restore", str(backup))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and rel in lines[0], result.output
    _untouched(fresh)


def test_a_backup_without_its_manifest_is_no_backup(backup: Path, fresh: Flask) -> None:
    (backup / "manifest.json").unlink()
    result = cli(fresh, "backup", "restore", str(backup))
    assert result.exit_code == 1 and "manifest.json is missing" in result.output
    _untouched(fresh)


def test_restoring_over_a_used_instance_is_refused_unless_forced(
    app: Flask, config: Config, backup: Path, world: dict[str, int]
) -> None:
    result = cli(app, "backup", "restore", str(backup))
    assert result.exit_code == 1 and "not empty" in result.output and "--force" in result.output
    # Forced: a case written after the backup is gone again, the backup's cases are all there.
    if config.is_sqlite:
        with get_database(app).writing() as session:
            seed_bulk_cases(session, 1, start=50_000)
        result = cli(app, "backup", "restore", "--force", str(backup))
        assert result.exit_code == 0, result.output
        with get_database(app).session() as session:
            refs = set(session.scalars(select(Case.reference)))
        assert len(refs) == 9


def test_a_backup_never_goes_where_it_would_hold_itself(
    app: Flask, config: Config, world: dict[str, int]
) -> None:
    result = cli(app, "backup", "create", str(config.data_dir / "b"))
    assert result.exit_code == 1 and "inside HOTLINE_DATA_DIR" in result.output
    make_private_dirs(config.data_dir.parent / "taken")
    result = cli(app, "backup", "create", str(config.data_dir.parent / "taken"))
    assert result.exit_code == 1 and "exists" in result.output


def test_the_data_dir_and_manifest_on_either_database(
    app: Flask, config: Config, backup: Path, world: dict[str, int]
) -> None:
    """On PostgreSQL the database is pg_dump's: the backup holds the data dir and says so."""
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["schema_revision"] == head_revision()
    recordings = sorted(p.name for p in config.recordings_dir.iterdir())
    assert len(recordings) == 5
    assert sorted(n.rsplit("/", 1)[1] for n in manifest["files"] if n.startswith("data/")) == recordings
    for name in recordings:
        assert (backup / "data" / "recordings" / name).read_bytes() == (
            config.recordings_dir / name
        ).read_bytes()
    _assert_private(backup)
    if on_postgresql():
        assert manifest["database"]["kind"] == "postgresql" and not manifest["database"]["included"]
        assert not (backup / "hotline.db").exists()
    else:
        assert manifest["database"] == {"kind": "sqlite", "file": "hotline.db"}


def _pg_dump_into_a_new_database(source_url: str, tmp_path: Path) -> str:
    """The README's steps: pg_dump -Fc, an empty database, pg_restore --no-owner; its URL."""
    plain = source_url.replace("postgresql+psycopg://", "postgresql://")
    dump = tmp_path / "hotline.dump"
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", plain], check=True)
    name = "t_restored_" + secrets.token_hex(6)
    with _pg_admin(os.environ["HOTLINE_TEST_PG_ADMIN_URL"]) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _created_databases.add(name)  # dropped with the run's other databases
    url = source_url.rsplit("/", 1)[0] + "/" + name
    plain_new = url.replace("postgresql+psycopg://", "postgresql://")
    subprocess.run(["pg_restore", "--no-owner", f"--dbname={plain_new}", str(dump)], check=True)
    return url


def _contents(app: Flask) -> tuple[set[str], dict[str, bytes], dict[str, str | None]]:
    with get_database(app).session() as session:
        refs = set(session.scalars(select(Case.reference)))
        rows = session.execute(select(Recording.recording_sid, Recording.stored_path)).all()
        recs = {sid: Path(path) for sid, path in rows if path}
        texts = {
            sid: text
            for sid, text in session.execute(
                select(Recording.recording_sid, Transcript.text).join(
                    Transcript, Transcript.recording_id == Recording.id
                )
            )
        }
    cfg: Config = app.config["HOTLINE"]
    for sid, path in recs.items():
        assert path.is_relative_to(cfg.recordings_dir), sid
    return refs, {sid: p.read_bytes() for sid, p in recs.items()}, texts


def test_backup_and_restore_round_trip_on_either_database(
    app: Flask, config: Config, backup: Path, tmp_path: Path
) -> None:
    """SQLite: the backup alone. PostgreSQL: pg_dump/pg_restore for the database, the backup for the rest."""
    env = {}
    if on_postgresql():
        env["DATABASE_URL"] = _pg_dump_into_a_new_database(config.database_url, tmp_path)
    fresh_cfg = make_config(
        tmp_path / "fresh", data_key=config.data_key, recording_key=config.recording_key, env=env
    )
    fresh = create_app(fresh_cfg)
    result = cli(fresh, "backup", "restore", str(backup))
    assert result.exit_code == 0, result.output
    assert "5 paths moved" in result.output and "5 data files" in result.output
    assert _contents(fresh) == _contents(app)
    assert len(_contents(fresh)[1]) == 5
    get_database(fresh).dispose()


@pytest.mark.sqlite_only
def test_a_backup_of_an_older_schema_is_migrated_when_restored(config: Config, tmp_path: Path) -> None:
    old = tmp_path / "old"
    make_private_dirs(old / "data")
    upgrade_database(f"sqlite:///{old / 'hotline.db'}", "0010")
    source = Source(f"sqlite:///{old / 'hotline.db'}", old / "data", config.data_key)
    manifest = create_backup(source, tmp_path / "b-old")
    assert manifest.schema_revision == "0010"
    fresh = create_app(
        make_config(tmp_path / "fresh", data_key=config.data_key, recording_key=config.recording_key)
    )
    result = cli(fresh, "backup", "restore", str(tmp_path / "b-old"))
    assert result.exit_code == 0 and "migrated from 0010" in result.output, result.output
    assert database_revision(fresh.config["HOTLINE"].database_url) == head_revision()
    get_database(fresh).dispose()


def _instance(config: Config, tmp_path: Path, name: str, **keys: str) -> Flask:
    """Another instance with these keys; on PostgreSQL its database is the backup's pg_dump, restored."""
    env = {}
    if on_postgresql():
        make_private_dirs(tmp_path / name)
        env["DATABASE_URL"] = _pg_dump_into_a_new_database(config.database_url, tmp_path / name)
    return create_app(make_config(tmp_path / name, env=env, **keys))


def test_a_restore_under_another_data_key_is_refused_naming_the_key(
    backup: Path, config: Config, tmp_path: Path
) -> None:
    """Restored, its numbers would not open and the instance would not start: nothing is written."""
    other_key = Fernet.generate_key().decode()
    other = _instance(config, tmp_path, "other", data_key=other_key, recording_key=config.recording_key)
    result = cli(other, "backup", "restore", str(backup))
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    fingerprint = key_fingerprints(config.data_key)[0]
    assert "HOTLINE_DATA_KEY here cannot decrypt its numbers in calls.caller_number_enc" in line
    assert f"another HOTLINE_DATA_KEY (fingerprint {fingerprint})" in line
    assert config.data_key not in result.output and other_key not in result.output
    _untouched(other)
    get_database(other).dispose()

    # The backup's key listed after the instance's own: restored, every number opens.
    both = f"{other_key},{config.data_key}"
    rotating = _instance(config, tmp_path, "rotating", data_key=both, recording_key=config.recording_key)
    result = cli(rotating, "backup", "restore", str(backup))
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    with get_database(rotating).session() as session:
        tokens = [t for t in session.scalars(select(Case.callback_number_enc)) if t]
    assert tokens and all(FieldCipher(both).decrypt(t).startswith("+66") for t in tokens)
    get_database(rotating).dispose()


def test_a_restore_under_another_recording_key_is_refused_naming_the_key_id(
    backup: Path, app: Flask, config: Config, tmp_path: Path
) -> None:
    """The manifest lists the recording keys the backup's files need; a restore without one is refused
    before anything is written, naming its id (never the key); with it listed, every recording opens."""
    manifest = json.loads((backup / "manifest.json").read_text())
    [needed] = RecordingCipher(config.recording_key).key_ids
    assert manifest["recording_key_ids"] == {needed: 5}

    other_key = new_recording_key()
    other = _instance(config, tmp_path, "other", data_key=config.data_key, recording_key=other_key)
    result = cli(other, "backup", "restore", str(backup))
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert f"sealed with the HOTLINE_RECORDING_KEY key id {needed} (5 files)" in line
    assert f"(ids {RecordingCipher(other_key).key_ids[0]})" in line
    assert config.recording_key not in result.output and other_key not in result.output
    _untouched(other)
    get_database(other).dispose()

    both = f"{other_key},{config.recording_key}"
    rotating = _instance(config, tmp_path, "rotating", data_key=config.data_key, recording_key=both)
    result = cli(rotating, "backup", "restore", str(backup))
    assert result.exit_code == 0, result.output
    assert _contents(rotating) == _contents(app)
    cfg: Config = rotating.config["HOTLINE"]
    opened = [cfg.sealer.read_all(p) for p in cfg.recordings_dir.rglob("*.sealed")]
    assert len(opened) == 5 and all(audio == tone_wav() for audio in opened)
    get_database(rotating).dispose()


def test_a_manifest_naming_a_file_outside_the_backup_is_refused(backup: Path, fresh: Flask) -> None:
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["files"]["data/../../outside.wav"] = {"size": 1, "sha256": "0" * 64}
    (backup / "manifest.json").write_text(json.dumps(manifest))
    result = cli(fresh, "backup", "restore", str(backup))
    assert result.exit_code == 1 and "data/../../outside.wav" in result.output
    _untouched(fresh)


def test_a_backup_that_fails_half_way_leaves_nothing_that_looks_finished(
    app: Flask, world: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = []

    def failing_copy(src: Path, dst: Path) -> tuple[int, str]:
        if copies:
            raise OSError(28, "No space left on device")
        copies.append(dst)
        return copy_private(src, dst)

    monkeypatch.setattr("backups.create.copy_private", failing_copy)
    result = cli(app, "backup", "create", str(tmp_path / "b"))
    assert result.exit_code == 1 and copies
    assert "no space left on device" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.glob(".b.partial-*"))  # the half-written folder is removed too
