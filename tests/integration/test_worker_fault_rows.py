"""Faults of our own disk, of our code and of deletion at Twilio, sweep by sweep on the test's clock.

The sweeps are the real TranscriptionJobs over the test's database and the simulator's MediaServer (see
test_ingestion). A disk that fills part-way through a download is a MediaClient whose file refuses
bytes past its room with ENOSPC, as a full file system does: a real partial file is on disk when it
fails. A copy gone from our disk is really moved away, and moved back.
"""

from __future__ import annotations

import errno
import io
import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from app import get_database
from infra.config import Config
from infra.sealed import RecordingCipher
from infra.sweeps import SweepReport
from telephony.rest import TwilioRest
from telephony.simulator.audio import generate_wav
from telephony.simulator.media_server import MediaServer
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN
from tests.integration.test_ingestion import FAST, Rig, TestClock, assert_one_private_copy
from transcription.jobs import JobSettings, TranscriptionJobs
from transcription.media import MediaClient, StoredMedia
from transcription.models import Recording, StorageStatus, TranscriptStatus
from transcription.pool import TranscriberPool

DELETING = JobSettings(download_attempts=3, backoff_base_s=1.0, lease_s=60.0, delete_after_download=True)


class _FillingFile(io.BufferedWriter):
    """A file on a disk with `room` bytes left: the write that needs more fails with ENOSPC."""

    def __init__(self, raw: io.FileIO, room: int, path: Path, seen: list[tuple[Path, int]]) -> None:
        super().__init__(raw)
        self._room, self._path, self._seen = room, path, seen

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if self.tell() + len(chunk) <= self._room:
            return super().write(chunk)
        super().write(chunk[: self._room - self.tell()])
        super().flush()
        self._seen.append((self._path, self._path.stat().st_size))  # the partial file, as it is on disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FillingDisk(MediaClient):
    """Twilio's media client writing to a disk that fills after `room` bytes of a download."""

    def __init__(self, *args: Any, room: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.room = room
        self.partials: list[tuple[Path, int]] = []

    def open_for_writing(self, path: Path) -> BinaryIO:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        return _FillingFile(io.FileIO(fd, "wb"), self.room, path, self.partials)


class BrokenClient(MediaClient):
    """A media client with a bug: what a download raises that nobody foresaw."""

    def fetch(self, recording_url: str, recording_sid: str, dest: Path) -> StoredMedia:
        raise KeyError("a bug of ours")


@pytest.fixture
def rig(app: Flask, config: Config) -> Iterator[Rig]:
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        rig = Rig(app, config, media, TestClock())
        try:
            yield rig
        finally:
            rig.close()


def jobs_with(rig: Rig, client: MediaClient, settings: JobSettings = FAST) -> TranscriptionJobs:
    pool = TranscriberPool({}, size=0, job_timeout_s=10, max_audio_s=60, max_jobs_per_process=1)
    rig._pools.append(pool)
    return TranscriptionJobs(
        get_database(rig.app),
        client,
        pool,
        rig.config.recordings_dir,
        settings,
        clock=rig.clock,
        worker_id="worker-a",
    )


def client_for(rig: Rig, cls: type[MediaClient] = MediaClient, **extra: Any) -> Any:
    http = requests.Session()
    rig._sessions.append(http)
    rest = TwilioRest(rig.media.base_url, ACCOUNT_SID, AUTH_TOKEN, session=http)
    return cls(rest, RecordingCipher(rig.config.recording_key), **extra)


# ---- downloads -----------------------------------------------------------------------------------------


def test_a_disk_that_fills_mid_download_never_makes_the_recording_unavailable(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    sid = rig.due(3.0)
    wav = generate_wav(3.0)
    disk = client_for(rig, FillingDisk, room=len(wav) // 3)
    jobs = jobs_with(rig, disk)
    caplog.set_level(logging.DEBUG, logger="transcription.jobs")
    sweeps = FAST.download_attempts + 2  # more tries than Twilio's copy is given

    for _ in range(sweeps):
        report = SweepReport()
        assert jobs.sweep_downloads(report) == 1
        row = rig.recording(sid)
        folder = rig.config.recordings_dir / f"{row.created_at:%Y}" / f"{row.created_at:%m}"
        reason = f"cannot write {folder} (no space left on device)"
        assert (row.storage_status, row.last_error, row.download_attempts) == ("pending", reason, 0)
        assert (row.claimed_by, row.claimed_until) == (None, None)
        assert row.next_attempt_at == rig.clock() + timedelta(seconds=FAST.backoff_base_s)  # steady
        assert report.faults == [f"recording {row.id}: {reason}"]
        assert report.summary() == "0 stored, 1 failed"
        assert rig.stored_files() == []  # the partial file is gone
        assert jobs.sweep_downloads() == 0  # not before its backoff
        rig.clock.advance(FAST.backoff_base_s)

    part = folder / f"{sid}.wav.sealed.part"
    assert disk.partials == [(part, len(wav) // 3)] * sweeps  # a real partial file each time
    said = [r for r in caplog.records if r.name == "transcription.jobs" and r.levelno >= logging.WARNING]
    assert len(said) == 1 and sid in said[0].getMessage()  # once for the fault, not at every sweep
    assert rig.transcripts(sid) == []

    assert rig.jobs().sweep_downloads() == 1  # the disk has room again
    assert_one_private_copy(rig, sid, wav)
    assert rig.downloads(sid) == sweeps + 1


def test_a_bug_in_the_download_is_written_to_the_row_and_the_claim_given_back(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    sid = rig.due(2.0)
    jobs = jobs_with(rig, client_for(rig, BrokenClient))
    caplog.set_level(logging.DEBUG, logger="transcription.jobs")
    for _ in range(3):
        report = SweepReport()
        assert jobs.sweep_downloads(report) == 1
        row = rig.recording(sid)
        assert (row.last_error, row.download_attempts, row.storage_status) == (
            "internal error: KeyError",
            0,
            StorageStatus.PENDING,
        )
        assert (row.claimed_by, row.claimed_until) == (None, None)
        assert report.faults == [f"recording {row.id}: internal error: KeyError"]
        rig.clock.advance(FAST.backoff_base_s)
    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert len(tracebacks) == 1  # the bug's traceback once, not at every retry

    assert rig.jobs().sweep_downloads() == 1
    assert_one_private_copy(rig, sid, generate_wav(2.0))


# ---- our stored copy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("harm", ["gone", "changed"])
def test_a_stored_copy_gone_or_changed_waits_with_its_reason_then_is_transcribed(rig: Rig, harm: str) -> None:
    sid = rig.due(3.0)
    jobs = rig.jobs()
    assert jobs.sweep_downloads() == 1
    path = Path(rig.recording(sid).stored_path or "")
    aside = path.with_name("aside")
    path.rename(aside)
    if harm == "changed":
        path.write_bytes(b"RIFF" + bytes(100))
    reason = {
        "gone": f"cannot read {path.parent} (no such file or directory)",
        "changed": f"stored copy changed on disk in {path.parent}",
    }[harm]

    report = SweepReport()
    assert jobs.sweep_transcripts(report) == 1
    [transcript] = rig.transcripts(sid)
    row = rig.recording(sid)
    assert (transcript.status, transcript.reason, transcript.attempts) == ("queued", reason, 0)
    assert (transcript.claimed_by, transcript.claimed_until) == (None, None)
    assert (row.storage_status, row.last_error) == (StorageStatus.STORED, reason)
    assert row.next_attempt_at == rig.clock() + timedelta(seconds=FAST.backoff_base_s)
    assert report.faults == [f"transcript {transcript.id} (recording {row.id}): {reason}"]
    assert jobs.sweep_transcripts() == 0  # not before its backoff

    aside.replace(path)
    rig.clock.advance(FAST.backoff_base_s)
    assert jobs.sweep_transcripts() == 1
    [transcript] = rig.transcripts(sid)
    assert (transcript.status, transcript.attempts) == (TranscriptStatus.NO_MODEL, 1)
    assert rig.recording(sid).last_error is None


def test_twilio_keeps_its_copy_while_ours_cannot_be_verified(rig: Rig) -> None:
    sid = rig.due(3.0)
    rig.media.inject(sid, "http500", method="DELETE")
    jobs = rig.jobs(DELETING)
    report = SweepReport()
    assert jobs.sweep_downloads(report) == 1
    row = rig.recording(sid)
    assert (row.storage_status, row.last_error, row.deleted_at_twilio) == (
        StorageStatus.STORED,
        "delete at Twilio: http 500",
        None,
    )
    assert report.counts == {"stored": 1, "failed": 1}
    assert report.faults == [f"recording {row.id}: delete at Twilio: http 500"]

    path = Path(row.stored_path or "")
    aside = path.with_name("aside")
    path.rename(aside)  # ours is gone: Twilio's is now the only copy
    report = SweepReport()
    jobs.reconcile(report)
    assert len(rig.media.requests("DELETE")) == 1 and rig.media.has(sid)
    reason = f"cannot read {path.parent} (no such file or directory)"
    assert rig.recording(sid).last_error == reason
    assert report.faults == [f"recording {row.id}: {reason}"]

    aside.replace(path)
    report = SweepReport()
    jobs.reconcile(report)
    assert not rig.media.has(sid)
    row = rig.recording(sid)
    assert (row.last_error, row.deleted_at_twilio) == (None, rig.clock())
    assert (report.counts, report.faults) == ({"deleted at Twilio": 1}, [])


# ---- claims ----------------------------------------------------------------------------------------------


def test_a_claim_taken_over_from_a_dead_worker_is_said(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    sid = rig.due(2.0)
    with get_database(rig.app).session() as session:
        row = session.scalar(select(Recording).where(Recording.recording_sid == sid))
        assert row is not None
        row.claimed_by, row.claimed_until = "dead-host:4242", rig.clock() - timedelta(seconds=1)
        rec_id = row.id
    caplog.set_level(logging.WARNING, logger="infra.claims")
    assert rig.jobs().sweep_downloads() == 1
    assert [r.getMessage() for r in caplog.records if r.name == "infra.claims"] == [
        f"recordings {rec_id} taken over from dead-host:4242, whose lease ran out"
    ]
    assert rig.recording(sid).storage_status == StorageStatus.STORED
