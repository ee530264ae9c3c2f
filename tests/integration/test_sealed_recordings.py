"""Recordings sealed at rest and key rotation, on the test database (SQLite, and PostgreSQL when asked).

Playback streams ranges of a sealed file; a changed file is neither played nor transcribed; `keys rotate`
re-encrypts every number and recording and is resumed after a fault; `db upgrade`'s step seals plain
recordings; a key that cannot open what is stored stops the start with one line.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select

from app import get_database
from cases import keys
from cases.keys import RotationReport, rotate_numbers, rotate_recordings
from cases.keys_cli import seal_plain_recordings
from cases.models import Call, Case
from infra.config import Config
from infra.crypto import FieldCipher
from infra.sealed import RecordingCipher, is_sealed, new_recording_key
from tests.integration import test_console
from tests.integration.test_console import World, as_user, fetch
from tests.support.seed import tone_wav
from transcription.jobs import JobSettings, TranscriptionJobs
from transcription.media import MediaClient
from transcription.models import Recording, Transcript, TranscriptStatus
from transcription.pool import TranscriptOutcome

world = test_console.world  # the console's seeded staff, cases and (sealed) recordings
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def recording_paths(app: Flask) -> dict[int, Path]:
    with get_database(app).session() as session:
        rows = session.execute(
            select(Recording.id, Recording.stored_path).where(Recording.stored_path.is_not(None))
        )
        return {rec_id: Path(path) for rec_id, path in rows}


def number_tokens(app: Flask) -> list[str]:
    with get_database(app).session() as session:
        calls = [t for t in session.scalars(select(Call.caller_number_enc).order_by(Call.id)) if t]
        cases = [t for t in session.scalars(select(Case.callback_number_enc).order_by(Case.id)) if t]
        return calls + cases


def walk_for_plain_audio(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"RIFF"]


# ---- playback --------------------------------------------------------------------------------------------


def test_playback_streams_ranges_of_a_sealed_file_and_refuses_a_changed_one(
    app: Flask, config: Config, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    rec_id = world.recordings["routed_50"]
    path = recording_paths(app)[rec_id]
    assert not path.read_bytes().startswith(b"RIFF") and walk_for_plain_audio(config.data_dir) == []
    client = as_user(app, world, "op50")
    url = f"/console/recordings/{rec_id}/audio"
    full = fetch(client, url)
    assert full.status_code == 200 and full.data == tone_wav()
    middle = fetch(client, url, Range="bytes=7000-9999")
    assert middle.status_code == 206 and middle.data == tone_wav()[7000:10000]
    assert middle.headers["Content-Range"] == f"bytes 7000-9999/{len(tone_wav())}"

    sealed = bytearray(path.read_bytes())
    sealed[-5] ^= 0x40  # one bit of the audio, as a disk error or a tamperer would
    path.write_bytes(bytes(sealed))
    with caplog.at_level(logging.ERROR, logger="console.playback"):
        assert fetch(client, url).status_code == 404
    assert any("fails authentication" in r.getMessage() for r in caplog.records)
    assert str(path.name) not in caplog.text  # the folder is named, never the file


# ---- transcription -----------------------------------------------------------------------------------------


class Ear:
    """A transcriber that notes what it was given: the audio must arrive opened, in memory."""

    def __init__(self) -> None:
        self.heard: list[Any] = []

    def transcribe(self, source: Path | bytes, language: str) -> TranscriptOutcome:
        self.heard.append(source)
        return TranscriptOutcome("done", None, "สวัสดี", [], 0.9, "stand-in", "m", language, None, 1.0, 5)


def requeue(app: Flask) -> None:
    with get_database(app).session() as session:
        for row in session.scalars(select(Transcript)):
            row.status, row.text, row.attempts = TranscriptStatus.QUEUED, None, 0


def test_the_transcriber_gets_the_opened_audio_and_never_a_changed_file(
    app: Flask, config: Config, world: World
) -> None:
    requeue(app)
    ear = Ear()
    media = MediaClient(object(), RecordingCipher(config.recording_key))  # type: ignore[arg-type]
    jobs = TranscriptionJobs(get_database(app), media, ear, config.recordings_dir, JobSettings(batch=50))
    tampered = recording_paths(app)[world.recordings["routed_10"]]
    data = bytearray(tampered.read_bytes())
    data[100] ^= 0x01
    tampered.write_bytes(bytes(data))

    jobs.sweep_transcripts()
    assert ear.heard and all(isinstance(s, bytes) and s == tone_wav() for s in ear.heard)
    assert len(ear.heard) == len(world.recordings) - 1
    with get_database(app).session() as session:
        rows = {r.recording_id: r for r in session.scalars(select(Transcript))}
        bad = rows[world.recordings["routed_10"]]
        assert bad.status == TranscriptStatus.QUEUED and bad.text is None
        assert bad.reason == f"stored copy changed on disk in {tampered.parent}"
        good = rows[world.recordings["routed_50"]]
        assert (good.status, good.text) == (TranscriptStatus.DONE, "สวัสดี")


# ---- rotation ----------------------------------------------------------------------------------------------


class Stop(Exception):
    pass


def test_rotation_reencrypts_everything_and_resumes_after_a_fault(
    app: Flask, config: Config, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = get_database(app)
    old_cipher = FieldCipher(config.data_key)
    with db.session() as session:  # a call in progress keying a number: its state holds it encrypted
        call = session.scalars(select(Call).order_by(Call.id)).first()
        assert call is not None
        call.ivr_state = {"node": "x", "vars": {}, "pending": {"digits": "enc:" + old_cipher.encrypt("0812")}}
        call.last_response = "enc:" + old_cipher.encrypt("<Response/>")
        call_id = call.id
    with db.session() as session:
        stamp = session.get(Call, call_id).updated_at  # type: ignore[union-attr]
    numbers_before = [old_cipher.decrypt(t) for t in number_tokens(app)]
    audio_before = {
        i: RecordingCipher(config.recording_key).read_all(p) for i, p in recording_paths(app).items()
    }

    new_data, new_rec = Fernet.generate_key().decode(), new_recording_key()
    cipher = FieldCipher(f"{new_data},{config.data_key}")
    sealer = RecordingCipher(f"{new_rec},{config.recording_key}")
    monkeypatch.setattr(keys, "BATCH", 2)
    lines: list[str] = []

    def stop_after_first_batch(line: str) -> None:
        lines.append(line)
        raise Stop

    with pytest.raises(Stop):  # a fault after the first batch of numbers
        rotate_numbers(db, cipher, RotationReport(), stop_after_first_batch)
    with pytest.raises(Stop):  # and after the first batch of recordings
        rotate_recordings(db, sealer, RotationReport(), stop_after_first_batch)
    assert lines == [
        "numbers: calls.caller_number_enc: 2 re-encrypted, 0 already current",
        "recordings: 2 sealed anew, 0 already current",
    ]
    assert sum(cipher.is_current(t) for t in number_tokens(app)) == 2

    report = RotationReport()
    rotate_numbers(db, cipher, report, lines.append)
    rotate_recordings(db, sealer, report, lines.append)
    assert report.failed == []
    assert report.current["calls.caller_number_enc"] == 2  # the first batch was not done twice
    assert report.current["recordings"] == 2 and report.done["recordings"] == len(audio_before) - 2
    assert lines[-1] == f"recordings: {len(audio_before) - 2} sealed anew, 2 already current"

    # The old keys are no longer needed for anything.
    only_new, only_new_rec = FieldCipher(new_data), RecordingCipher(new_rec)
    assert [only_new.decrypt(t) for t in number_tokens(app)] == numbers_before
    assert {i: only_new_rec.read_all(p) for i, p in recording_paths(app).items()} == audio_before
    with db.session() as session:
        call = session.get(Call, call_id)
        assert call is not None and call.updated_at == stamp  # a key change is not a change of the call
        assert only_new.decrypt(call.ivr_state["pending"]["digits"][4:]) == "0812"
        assert only_new.decrypt((call.last_response or "")[4:]) == "<Response/>"
    keys.check_keys(db, only_new, only_new_rec)  # the start would accept the new keys alone

    again = RotationReport()
    rotate_numbers(db, cipher, again, lambda _line: None)
    rotate_recordings(db, sealer, again, lambda _line: None)
    assert sum(again.done.values()) == 0


def test_db_upgrade_seals_recordings_stored_plain_and_reports_one_that_does_not_match(
    app: Flask, config: Config, world: World
) -> None:
    paths = recording_paths(app)
    plain_ids = list(paths)[:2]
    with get_database(app).session() as session:
        for rec_id in plain_ids:  # as an older version stored them
            paths[rec_id].write_bytes(tone_wav())
        wrong = session.get(Recording, plain_ids[1])
        assert wrong is not None
        wrong.sha256 = hashlib.sha256(b"other audio").hexdigest()
    said = seal_plain_recordings(get_database(app), RecordingCipher(config.recording_key))
    assert said == f"recordings: 1 plain ones sealed\n  recording {plain_ids[1]}: " + (
        "the plain recording does not match its checksum: left as it is"
    )
    assert is_sealed(paths[plain_ids[0]]) and not is_sealed(paths[plain_ids[1]])
    assert RecordingCipher(config.recording_key).read_all(paths[plain_ids[0]]) == tone_wav()
    assert walk_for_plain_audio(config.data_dir) == [paths[plain_ids[1]]]
    assert not list(config.recordings_dir.rglob("*.part"))


# ---- the start ------------------------------------------------------------------------------------------


def start(config: Config, tmp_path: Path, **keys_env: str) -> subprocess.CompletedProcess[str]:
    """`flask --app app config check` on this test's database and data dir, with the keys given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "TWILIO_"))}
    env.update(
        HOTLINE_INSTANCE_DIR=str(tmp_path / "elsewhere"),
        HOTLINE_DATA_DIR=str(config.data_dir),
        DATABASE_URL=config.database_url,
        **keys_env,
    )
    return subprocess.run(
        [str(BIN / "flask"), "--app", "app", "config", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_a_key_that_cannot_open_what_is_stored_stops_the_start_with_one_line(
    app: Flask, config: Config, world: World, tmp_path: Path
) -> None:
    other_data, other_rec = Fernet.generate_key().decode(), new_recording_key()
    get_database(app).dispose()  # SQLite: the checks in the other process read the file as it is

    wrong_data = start(
        config, tmp_path, HOTLINE_DATA_KEY=other_data, HOTLINE_RECORDING_KEY=config.recording_key
    )
    assert wrong_data.returncode == 2 and wrong_data.stdout == ""
    assert wrong_data.stderr.splitlines() == [
        "hotline: HOTLINE_DATA_KEY cannot decrypt the numbers stored in calls.caller_number_enc: "
        "the key that encrypted them is missing or wrong"
    ]
    assert other_data not in wrong_data.stderr

    wrong_rec = start(config, tmp_path, HOTLINE_DATA_KEY=config.data_key, HOTLINE_RECORDING_KEY=other_rec)
    assert wrong_rec.returncode == 2
    [line] = wrong_rec.stderr.splitlines()
    assert line.startswith("hotline: HOTLINE_RECORDING_KEY cannot open the recordings in ")

    rotating = start(
        config,
        tmp_path,
        HOTLINE_DATA_KEY=f"{other_data},{config.data_key}",
        HOTLINE_RECORDING_KEY=f"{other_rec},{config.recording_key}",
    )
    assert rotating.returncode == 0, rotating.stderr
