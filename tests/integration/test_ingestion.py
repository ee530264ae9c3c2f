"""Recordings from Twilio's callbacks to a verified private copy: idempotent ingestion, downloads that fail
every way Twilio's media and the network fail, deletion at Twilio, reconciliation and claims.

The media come from the simulator's MediaServer (basic auth, fault injection) and every sweep runs the real
TranscriptionJobs against the test's database with a clock the test moves. The transcriber is the real pool
with no model installed: no child process starts and every language ends "no_model".
"""

from __future__ import annotations

import hashlib
import itertools
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import delete, func, select, update

from app import get_database
from infra.clock import utcnow
from infra.config import Config
from infra.sealed import RecordingCipher
from telephony.rest import TwilioRest
from telephony.simulator.audio import generate_wav
from telephony.simulator.media_server import MediaServer
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE, TwilioCaller, sign
from tests.integration.test_webhooks import FULL_CALL, Recorded, answer, export_cases, hang_up, walk
from transcription import ingest
from transcription.jobs import JobSettings, TranscriptionJobs
from transcription.media import MediaClient
from transcription.models import Recording, RecordingCallback, StorageStatus, Transcript, TranscriptStatus
from transcription.pool import TranscriberPool

OTHER_ACCOUNT = "AC" + "2" * 32
# Tiny backoff (1 s, 2 s, 4 s ... on the test's clock), few attempts, short timeouts.
FAST = JobSettings(
    download_attempts=4,
    backoff_base_s=1.0,
    backoff_max_s=60.0,
    lease_s=60.0,
    reconcile_after_s=300.0,
    batch=8,
)
READ_TIMEOUT_S = 0.4


# ---- the pieces -------------------------------------------------------------------------------------


class TestClock:
    """A clock the test moves by hand (the jobs read it for due times, backoff and leases)."""

    __test__ = False

    def __init__(self, start: datetime | None = None) -> None:
        # A minute ahead of the real clock the webhooks use, so what they make due is due at once.
        self.now = start or utcnow() + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def to(self, when: datetime) -> None:
        self.now = when


@dataclass(frozen=True)
class Hosted(Recorded):
    """What Twilio posts to the <Record> action, for a recording the MediaServer really holds."""

    url: str = ""

    def form(self) -> dict[str, str]:
        return {**super().form(), "RecordingUrl": self.url}


@dataclass
class Rig:
    """The app's database, the media server, a clock, and a way to build workers over them."""

    app: Flask
    config: Config
    media: MediaServer
    clock: TestClock
    _sessions: list[requests.Session] = field(default_factory=list)
    _pools: list[TranscriberPool] = field(default_factory=list)

    def jobs(
        self,
        settings: JobSettings = FAST,
        *,
        worker_id: str = "worker-a",
        token: str = AUTH_TOKEN,
        api_base: str | None = None,
    ) -> TranscriptionJobs:
        http = requests.Session()
        self._sessions.append(http)
        rest = TwilioRest(
            api_base or self.media.base_url,
            ACCOUNT_SID,
            token,
            connect_timeout_s=2.0,
            media_read_timeout_s=READ_TIMEOUT_S,
            session=http,
        )
        client = MediaClient(rest, RecordingCipher(self.config.recording_key))
        pool = TranscriberPool({}, size=0, job_timeout_s=10, max_audio_s=60, max_jobs_per_process=1)
        self._pools.append(pool)
        return TranscriptionJobs(
            get_database(self.app),
            client,
            pool,
            self.config.recordings_dir,
            settings,
            clock=self.clock,
            worker_id=worker_id,
        )

    def close(self) -> None:
        for http in self._sessions:
            http.close()
        for pool in self._pools:
            pool.close()

    # recordings
    def hosted(self, seconds: float = 3.0, *, reported: int | None = None) -> Hosted:
        sid = new_recording_sid()
        url = self.media.register(sid, generate_wav(seconds))
        return Hosted(sid=sid, duration=round(seconds) if reported is None else reported, url=url)

    def due(
        self,
        seconds: float = 3.0,
        *,
        reported: int | None = None,
        url: str | None = None,
        sid: str | None = None,
        language: str | None = "th",
    ) -> str:
        """A recording Twilio reported completed (through the service function); returns its sid."""
        sid = sid or new_recording_sid()
        media_url = self.media.register(sid, generate_wav(seconds))
        with get_database(self.app).session() as session:
            row = ingest.apply_status_callback(
                session,
                recording_sid=sid,
                call_sid=new_call_sid(),
                status="completed",
                media_url=url or media_url,
                duration_s=round(seconds) if reported is None else reported,
                language=language,
                now=self.clock(),
            )
            assert row is not None
        return sid

    def recording(self, sid: str) -> Recording:
        with get_database(self.app).session() as session:
            row = session.scalar(select(Recording).where(Recording.recording_sid == sid))
            assert row is not None, sid
            return row

    def transcripts(self, sid: str) -> list[Transcript]:
        with get_database(self.app).session() as session:
            return list(
                session.scalars(
                    select(Transcript).join(Recording).where(Recording.recording_sid == sid)
                ).all()
            )

    def callbacks(self, sid: str) -> list[tuple[str, str]]:
        with get_database(self.app).session() as session:
            rows = session.execute(
                select(RecordingCallback.recording_sid, RecordingCallback.status)
                .where(RecordingCallback.recording_sid == sid)
                .order_by(RecordingCallback.id)
            )
            return [(s, st) for s, st in rows]

    def count(self, model: type[Any]) -> int:
        with get_database(self.app).session() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    def media_path(self, sid: str) -> str:
        return f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}.wav"

    def downloads(self, sid: str) -> int:
        return self.media.request_count(self.media_path(sid))

    def stored_files(self) -> list[Path]:
        root = self.config.recordings_dir
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def sweep_until_settled(self, jobs: TranscriptionJobs, *, limit: int = 20) -> list[datetime]:
        """Sweep, jumping the clock to each retry; returns the times at which attempts were made."""
        attempts: list[datetime] = []
        for _ in range(limit):
            if jobs.sweep_downloads():
                attempts.append(self.clock())
            pending = [
                r
                for r in self._rows()
                if r.storage_status == StorageStatus.PENDING and r.next_attempt_at is not None
            ]
            if not pending:
                return attempts
            self.clock.to(max(self.clock(), min(r.next_attempt_at for r in pending if r.next_attempt_at)))
        raise AssertionError("downloads did not settle")

    def _rows(self) -> list[Recording]:
        with get_database(self.app).session() as session:
            return list(session.scalars(select(Recording)).all())


def new_recording_sid() -> str:
    return "RE" + uuid.uuid4().hex


def new_call_sid() -> str:
    return "CA" + uuid.uuid4().hex


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def completed(caller: TwilioCaller, rec: Hosted, status: str = "completed") -> int:
    """Twilio's recordingStatusCallback for this recording, signed, through the real webhook."""
    form = {"RecordingSid": rec.sid, "RecordingUrl": rec.url, "RecordingStatus": status}
    if status == "completed":
        form["RecordingDuration"] = str(rec.duration)
    return caller.post("/twilio/recording-status", **form).status_code


@pytest.fixture
def rig(app: Flask, config: Config) -> Iterator[Rig]:
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        rig = Rig(app, config, media, TestClock())
        try:
            yield rig
        finally:
            rig.close()


@pytest.fixture
def caller(new_caller: Callable[..., TwilioCaller]) -> TwilioCaller:
    return new_caller()


def assert_one_private_copy(rig: Rig, sid: str, wav: bytes) -> Path:
    """Exactly one stored file, this recording's bytes, 0600 in 0700 folders, matching the row."""
    [path] = rig.stored_files()
    assert path.name == f"{sid}.wav.sealed"
    assert not path.read_bytes().startswith(b"RIFF")  # sealed at rest (infra.sealed)
    assert RecordingCipher(rig.config.recording_key).read_all(path) == wav
    assert mode(path) == 0o600
    folder = path.parent
    while True:
        assert mode(folder) == 0o700, f"{folder} is {oct(mode(folder))}"
        if folder == rig.config.recordings_dir:
            break
        folder = folder.parent
    row = rig.recording(sid)
    assert row.storage_status == StorageStatus.STORED
    assert row.stored_path == str(path)
    assert row.sha256 == sha256(wav)
    assert row.size_bytes == len(wav)
    return path


# ---- ingestion: the same callback many times, sequentially and at once -------------------------------------


def test_the_completed_callback_five_times_is_one_download_one_file_one_transcript(
    rig: Rig, caller: TwilioCaller
) -> None:
    rec = rig.hosted(4.0)
    walk(caller, *FULL_CALL, rec, "1")  # the message is sent: a draft case holds it
    for _ in range(5):
        assert completed(caller, rec) == 200
    hang_up(caller)

    assert rig.callbacks(rec.sid) == [(rec.sid, "completed")]
    assert rig.count(Recording) == 1
    row = rig.recording(rec.sid)
    assert (row.status, row.storage_status, row.duration_s, row.language) == ("completed", "pending", 4, "th")
    assert row.case_id is not None

    jobs = rig.jobs()
    assert jobs.sweep_downloads() == 1
    assert jobs.sweep_downloads() == 0
    assert rig.downloads(rec.sid) == 1
    assert rig.media.requests("DELETE") == []  # deletion at Twilio is off by default
    assert_one_private_copy(rig, rec.sid, generate_wav(4.0))
    [transcript] = rig.transcripts(rec.sid)
    assert (transcript.status, transcript.language, transcript.attempts) == (TranscriptStatus.QUEUED, "th", 0)

    # More callbacks after the download change nothing: no second download, no second transcript.
    assert completed(caller, rec) == 200
    assert jobs.sweep_downloads() == 0
    assert rig.downloads(rec.sid) == 1
    assert rig.count(Transcript) == 1
    [case] = export_cases(rig.app)
    assert (case["recording_sid"], case["recording_status"]) == (rec.sid, "stored")


def test_five_concurrent_completed_callbacks_make_one_recording_and_one_download(
    rig: Rig, caller: TwilioCaller, served_app: str
) -> None:
    rec = rig.hosted(3.0)
    walk(caller, *FULL_CALL, rec)  # the action came; the callbacks arrive together, five times
    form = caller.params(
        RecordingSid=rec.sid,
        RecordingUrl=rec.url,
        RecordingStatus="completed",
        RecordingDuration=str(rec.duration),
    )
    headers = {"X-Twilio-Signature": sign(PUBLIC_BASE + "/twilio/recording-status", form)}
    start = threading.Barrier(5)

    def post() -> int:
        start.wait(timeout=10)
        url = served_app + "/twilio/recording-status"
        return requests.post(url, data=form, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=5) as threads:
        statuses = [f.result() for f in [threads.submit(post) for _ in range(5)]]
    assert statuses == [200] * 5
    assert rig.callbacks(rec.sid) == [(rec.sid, "completed")]
    assert rig.count(Recording) == 1
    assert rig.recording(rec.sid).status == "completed"

    jobs = rig.jobs()
    assert jobs.sweep_downloads() == 1
    assert jobs.sweep_downloads() == 0
    assert rig.downloads(rec.sid) == 1
    assert_one_private_copy(rig, rec.sid, generate_wav(3.0))
    assert len(rig.transcripts(rec.sid)) == 1


def test_the_service_function_applies_each_status_once(rig: Rig) -> None:
    sid, call_sid = new_recording_sid(), new_call_sid()
    url = rig.media.register(sid, generate_wav(2.0))
    db = get_database(rig.app)

    def apply(status: str) -> Recording | None:
        with db.session() as session:
            return ingest.apply_status_callback(
                session,
                recording_sid=sid,
                call_sid=call_sid,
                status=status,
                media_url=url,
                duration_s=2,
                language="th",
                now=rig.clock(),
            )

    assert apply("in-progress") is not None
    assert rig.recording(sid).status == "reported"  # in-progress is not Twilio's last word
    results = [apply("completed") for _ in range(5)]
    assert results[0] is not None and results[1:] == [None] * 4
    assert rig.callbacks(sid) == [(sid, "in-progress"), (sid, "completed")]
    row = rig.recording(sid)
    assert (row.status, row.storage_status) == ("completed", StorageStatus.PENDING)
    assert row.next_attempt_at == rig.clock()


def test_the_service_function_called_concurrently_applies_a_status_once(rig: Rig) -> None:
    sid, call_sid = new_recording_sid(), new_call_sid()
    url = rig.media.register(sid, generate_wav(2.0))
    db = get_database(rig.app)
    start = threading.Barrier(5)

    def apply() -> bool:
        start.wait(timeout=10)
        with db.session() as session:
            row = ingest.apply_status_callback(
                session,
                recording_sid=sid,
                call_sid=call_sid,
                status="completed",
                media_url=url,
                duration_s=2,
                language="th",
                now=rig.clock(),
            )
            return row is not None

    with ThreadPoolExecutor(max_workers=5) as threads:
        applied = [f.result() for f in [threads.submit(apply) for _ in range(5)]]
    assert applied.count(True) == 1
    assert rig.callbacks(sid) == [(sid, "completed")]
    assert rig.count(Recording) == 1


# ---- ingestion: callbacks out of order ---------------------------------------------------------------------


def test_absent_after_completed_changes_nothing(rig: Rig, caller: TwilioCaller) -> None:
    rec = rig.hosted(3.0)
    walk(caller, *FULL_CALL, rec, "1")
    assert completed(caller, rec) == 200
    assert completed(caller, rec, "absent") == 200
    assert completed(caller, rec, "in-progress") == 200
    assert rig.callbacks(rec.sid) == [(rec.sid, "completed"), (rec.sid, "absent"), (rec.sid, "in-progress")]
    row = rig.recording(rec.sid)
    assert (row.status, row.storage_status, row.last_error) == ("completed", StorageStatus.PENDING, None)
    assert rig.jobs().sweep_downloads() == 1
    assert_one_private_copy(rig, rec.sid, generate_wav(3.0))


def test_completed_before_the_record_action_is_downloaded_once_for_its_case(
    rig: Rig, caller: TwilioCaller
) -> None:
    rec = rig.hosted(3.0)
    record_step = walk(caller, *FULL_CALL)
    assert completed(caller, rec) == 200  # overtakes the action request
    row = rig.recording(rec.sid)
    assert (row.status, row.storage_status, row.case_id) == ("completed", StorageStatus.PENDING, None)
    answer(caller, answer(caller, record_step, rec), "1")  # the action, then the caller sends
    hang_up(caller)

    assert rig.count(Recording) == 1
    row = rig.recording(rec.sid)
    assert (row.status, row.duration_s, row.language) == ("completed", 3, "th")
    assert row.case_id is not None
    jobs = rig.jobs()
    assert jobs.sweep_downloads() == 1
    assert jobs.sweep_downloads() == 0
    assert rig.downloads(rec.sid) == 1
    assert_one_private_copy(rig, rec.sid, generate_wav(3.0))
    assert len(rig.transcripts(rec.sid)) == 1
    [case] = export_cases(rig.app)
    assert (case["recording_sid"], case["recording_status"], case["transcript_status"]) == (
        rec.sid,
        "stored",
        "queued",
    )


def test_an_absent_recording_is_never_fetched(rig: Rig, caller: TwilioCaller) -> None:
    rec = rig.hosted(0.0)
    walk(caller, *FULL_CALL)  # the caller said nothing: Twilio skips the action and reports absent
    assert completed(caller, rec, "absent") == 200
    assert completed(caller, rec, "completed") == 200  # a stray later word changes nothing
    row = rig.recording(rec.sid)
    assert (row.status, row.storage_status) == ("absent", StorageStatus.ABSENT)
    jobs = rig.jobs()
    rig.clock.advance(FAST.reconcile_after_s * 10)
    assert jobs.sweep_downloads() == 0
    assert jobs.reconcile() == 0
    assert rig.media.requests() == []
    assert rig.count(Transcript) == 0


def test_a_failed_recording_is_unavailable_without_a_download(rig: Rig, caller: TwilioCaller) -> None:
    rec = rig.hosted(3.0)
    walk(caller, *FULL_CALL, rec, "1")
    assert completed(caller, rec, "failed") == 200
    row = rig.recording(rec.sid)
    assert (row.status, row.storage_status) == ("failed", StorageStatus.UNAVAILABLE)
    assert row.last_error == "Twilio reported the recording failed"
    assert rig.jobs().sweep_downloads() == 0
    assert rig.media.requests() == []
    [case] = export_cases(rig.app)
    assert case["recording_status"] == "unavailable"  # the case is kept, and says so


# ---- downloads that fail ---------------------------------------------------------------------------------


def test_server_errors_are_retried_with_growing_backoff_then_stored(rig: Rig) -> None:
    sid = rig.due(3.0)
    rig.media.inject(sid, "http500", times=2)
    rig.media.inject(sid, "http503")
    jobs = rig.jobs()
    start = rig.clock()

    assert jobs.sweep_downloads() == 1
    row = rig.recording(sid)
    assert (row.download_attempts, row.last_error, row.storage_status) == (1, "http 500", "pending")
    assert row.next_attempt_at == start + timedelta(seconds=1)
    assert row.claimed_by is None and row.claimed_until is None  # the claim is given back
    assert jobs.sweep_downloads() == 0  # not due yet: no request
    rig.clock.advance(0.999)
    assert jobs.sweep_downloads() == 0
    assert rig.downloads(sid) == 1

    attempts = [start, *rig.sweep_until_settled(jobs)]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps == [1.0, 2.0, 4.0]  # backoff doubles
    assert rig.downloads(sid) == 4
    row = rig.recording(sid)
    assert (row.download_attempts, row.last_error) == (3, None)
    assert_one_private_copy(rig, sid, generate_wav(3.0))
    assert len(rig.transcripts(sid)) == 1


def test_backoff_is_capped(rig: Rig) -> None:
    sid = rig.due(2.0)
    rig.media.inject(sid, "http503", times=None)
    settings = JobSettings(download_attempts=6, backoff_base_s=1.0, backoff_max_s=3.0, lease_s=60.0)
    attempts = rig.sweep_until_settled(rig.jobs(settings))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps == [1.0, 2.0, 3.0, 3.0, 3.0]
    assert rig.recording(sid).storage_status == StorageStatus.UNAVAILABLE


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("slow", "timeout"),  # no answer within the read timeout
        ("stall", "interrupted: ConnectionError"),  # the body stops coming mid-way
        ("truncated", "interrupted: ChunkedEncodingError"),  # Content-Length promised more than came
        ("html", "not a WAV file"),  # a 200 that is not audio
        ("http404", "http 404: media not (yet) there"),
    ],
)
def test_a_failed_download_leaves_nothing_behind_and_is_retried(rig: Rig, fault: Any, error: str) -> None:
    sid = rig.due(3.0)
    rig.media.inject(sid, fault, delay_s=READ_TIMEOUT_S * 4)
    jobs = rig.jobs()
    assert jobs.sweep_downloads() == 1
    row = rig.recording(sid)
    assert (row.storage_status, row.download_attempts, row.last_error) == ("pending", 1, error)
    assert row.stored_path is None and row.sha256 is None
    assert rig.stored_files() == []  # no partial file, no .part left over
    assert rig.count(Transcript) == 0

    rig.clock.advance(FAST.backoff_base_s)
    assert jobs.sweep_downloads() == 1
    assert rig.downloads(sid) == 2
    assert_one_private_copy(rig, sid, generate_wav(3.0))


def test_a_slow_answer_within_the_timeout_is_fine(rig: Rig) -> None:
    sid = rig.due(2.0)
    rig.media.inject(sid, "slow", delay_s=READ_TIMEOUT_S / 4)
    assert rig.jobs().sweep_downloads() == 1
    assert rig.recording(sid).download_attempts == 0
    assert_one_private_copy(rig, sid, generate_wav(2.0))


def test_a_non_audio_body_every_time_ends_unavailable(rig: Rig) -> None:
    sid = rig.due(3.0)
    rig.media.inject(sid, "html", times=None)
    attempts = rig.sweep_until_settled(rig.jobs())
    assert len(attempts) == FAST.download_attempts
    row = rig.recording(sid)
    assert (row.storage_status, row.download_attempts, row.last_error) == (
        StorageStatus.UNAVAILABLE,
        FAST.download_attempts,
        "not a WAV file",
    )
    assert rig.stored_files() == []
    assert rig.count(Transcript) == 0


def test_wrong_credentials_are_retried_then_the_recording_is_unavailable(rig: Rig) -> None:
    sid = rig.due(3.0)
    jobs = rig.jobs(token="not-the-auth-token")
    attempts = rig.sweep_until_settled(jobs)
    assert len(attempts) == FAST.download_attempts
    assert rig.downloads(sid) == FAST.download_attempts  # each a real request, refused with 401
    row = rig.recording(sid)
    assert row.storage_status == StorageStatus.UNAVAILABLE
    assert row.download_attempts == FAST.download_attempts
    assert row.last_error == "http 401: credentials refused"
    assert row.next_attempt_at is not None and row.claimed_by is None
    # After the last attempt nothing more is tried, however late it gets.
    rig.clock.advance(86400)
    assert jobs.sweep_downloads() == 0
    assert jobs.reconcile() == 0
    assert rig.downloads(sid) == FAST.download_attempts
    assert rig.stored_files() == []
    assert rig.count(Transcript) == 0


@pytest.mark.parametrize("failure", ["wrong credentials", "server errors"])
def test_a_case_whose_recording_is_unavailable_is_exported_flagged(
    rig: Rig, caller: TwilioCaller, failure: str
) -> None:
    rec = rig.hosted(3.0)
    walk(caller, *FULL_CALL, rec, "1")
    assert completed(caller, rec) == 200
    [case] = export_cases(rig.app)
    assert case["recording_status"] == "completed"  # Twilio's word until we have tried
    if failure == "server errors":
        rig.media.inject(rec.sid, "http500", times=None)
    rig.sweep_until_settled(rig.jobs(token="wrong" if failure == "wrong credentials" else AUTH_TOKEN))
    assert rig.recording(rec.sid).storage_status == StorageStatus.UNAVAILABLE
    assert rig.downloads(rec.sid) == FAST.download_attempts

    [case] = export_cases(rig.app)  # never dropped: staff see it, and that the recording is lost
    assert case["recording_sid"] == rec.sid
    assert case["recording_status"] == "unavailable"
    assert (case["transcript_status"], case["transcript_text"]) == (None, None)


def other_host_urls(rig: Rig, other: MediaServer, sid: str) -> dict[str, str]:
    port = urlport(rig.media.base_url)
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}"
    return {
        "other server": other.recording_url(sid),
        "same port, other host name": f"http://localhost:{port}{path}",
        "https instead of http": f"https://127.0.0.1:{port}{path}",
        "user info trick": f"http://127.0.0.1:{port}@127.0.0.1:{urlport(other.base_url)}{path}",
        "another account": f"{rig.media.base_url}/2010-04-01/Accounts/{OTHER_ACCOUNT}/Recordings/{sid}",
        "another recording": f"{rig.media.base_url}{path[: -len(sid)]}{new_recording_sid()}",
        "a query string": f"{rig.media.base_url}{path}?redirect=http://127.0.0.1:{urlport(other.base_url)}/",
        "a path that climbs": f"{rig.media.base_url}{path}/../../../../Recordings/{sid}",
        "not a recording path": f"{rig.media.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}",
    }


def urlport(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


REFUSED_URLS = [
    "other server",
    "same port, other host name",
    "https instead of http",
    "user info trick",
    "another account",
    "another recording",
    "a query string",
    "a path that climbs",
    "not a recording path",
]


@pytest.mark.parametrize("kind", REFUSED_URLS)
def test_a_recording_url_that_is_not_ours_is_never_requested(rig: Rig, kind: str) -> None:
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as other:
        sid = new_recording_sid()
        other.register(sid, generate_wav(2.0))
        url = other_host_urls(rig, other, sid)[kind]
        rig.due(2.0, sid=sid, url=url)
        jobs = rig.jobs()
        assert jobs.sweep_downloads() == 1
        row = rig.recording(sid)
        assert row.storage_status == StorageStatus.UNAVAILABLE  # at once: retrying cannot help
        assert row.download_attempts == 1
        assert row.last_error is not None and row.last_error.startswith("refused: ")
        assert ACCOUNT_SID not in row.last_error and "127.0.0.1" not in row.last_error
        rig.clock.advance(86400)
        assert jobs.sweep_downloads() == 0
        assert other.requests() == [] and rig.media.requests() == []
        assert rig.stored_files() == []


def test_a_duration_far_from_the_reported_one_is_not_kept(rig: Rig) -> None:
    sid = rig.due(3.0, reported=10)  # Twilio said 10 s; the media holds 3 s
    jobs = rig.jobs()
    assert jobs.sweep_downloads() == 1
    row = rig.recording(sid)
    assert (row.storage_status, row.last_error) == (StorageStatus.PENDING, "truncated: 3.0 s of 10 s")
    assert rig.stored_files() == []
    rig.sweep_until_settled(jobs)
    row = rig.recording(sid)
    assert (row.storage_status, row.download_attempts) == (StorageStatus.UNAVAILABLE, FAST.download_attempts)
    assert rig.count(Transcript) == 0


@pytest.mark.parametrize(("seconds", "reported"), [(5.0, 5), (5.0, 6), (4.4, 5), (60.0, 62)])
def test_a_duration_close_to_the_reported_one_is_kept(rig: Rig, seconds: float, reported: int) -> None:
    sid = rig.due(seconds, reported=reported)
    assert rig.jobs().sweep_downloads() == 1
    assert_one_private_copy(rig, sid, generate_wav(seconds))
    assert rig.recording(sid).audio_duration_s == pytest.approx(seconds)


# ---- deletion at Twilio ------------------------------------------------------------------------------


DELETING = JobSettings(
    download_attempts=3, backoff_base_s=1.0, lease_s=60.0, delete_after_download=True, batch=8
)


def test_twilio_deletes_only_after_the_copy_is_stored_and_verified(rig: Rig) -> None:
    sid = rig.due(3.0)
    wav = generate_wav(3.0)
    seen: list[tuple[str, str, bool, str | None, str | None]] = []

    def observe(method: str, path: str) -> None:
        # What the hotline had at the moment Twilio was asked to delete (in the media server's thread).
        if method == "DELETE":
            files = rig.stored_files()
            row = rig.recording(sid)
            opened = RecordingCipher(rig.config.recording_key).read_all(files[0]) if len(files) == 1 else b""
            on_disk = sha256(opened) == sha256(wav)
            seen.append((method, path, on_disk, str(row.storage_status), row.sha256))

    rig.media.observer = observe
    jobs = rig.jobs(DELETING)
    assert jobs.sweep_downloads() == 1
    delete_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}.json"
    assert rig.media.requests() == [("GET", rig.media_path(sid)), ("DELETE", delete_path)]
    assert seen == [("DELETE", delete_path, True, "stored", sha256(wav))]
    assert not rig.media.has(sid)
    row = rig.recording(sid)
    assert row.deleted_at_twilio == rig.clock()
    assert_one_private_copy(rig, sid, wav)
    assert jobs.reconcile() == 0  # nothing left to delete
    assert len(rig.media.requests("DELETE")) == 1


@pytest.mark.parametrize("fault", ["http500", "truncated", "html", "slow"])
def test_a_failed_download_never_deletes_at_twilio(rig: Rig, fault: Any) -> None:
    sid = rig.due(3.0)
    rig.media.inject(sid, fault, times=None, delay_s=READ_TIMEOUT_S * 3)
    jobs = rig.jobs(DELETING)
    rig.sweep_until_settled(jobs)
    assert rig.recording(sid).storage_status == StorageStatus.UNAVAILABLE
    assert jobs.reconcile() == 0
    assert rig.media.requests("DELETE") == []
    assert rig.media.has(sid)


def test_a_mismatched_duration_never_deletes_at_twilio(rig: Rig) -> None:
    sid = rig.due(3.0, reported=20)
    jobs = rig.jobs(DELETING)
    rig.sweep_until_settled(jobs)
    assert jobs.reconcile() == 0
    assert rig.media.requests("DELETE") == []
    assert rig.media.has(sid)


@pytest.mark.parametrize("fault", ["http500", "http503", "slow"])
def test_a_failed_delete_is_retried_by_reconcile(rig: Rig, fault: Any) -> None:
    sid = rig.due(3.0)
    # A slow DELETE still happens at Twilio, later than we stop waiting: hold it long enough to look.
    rig.media.inject(sid, fault, method="DELETE", delay_s=READ_TIMEOUT_S * 15)
    jobs = rig.jobs(DELETING)
    assert jobs.sweep_downloads() == 1
    assert len(rig.media.requests("DELETE")) == 1
    assert rig.media.has(sid)
    row = rig.recording(sid)
    assert (row.storage_status, row.deleted_at_twilio) == (StorageStatus.STORED, None)

    rig.clock.advance(60)
    assert jobs.reconcile() == 1
    assert len(rig.media.requests("DELETE")) == 2
    assert not rig.media.has(sid)
    assert rig.recording(sid).deleted_at_twilio == rig.clock()
    assert jobs.reconcile() == 0
    assert len(rig.media.requests("DELETE")) == 2
    assert rig.downloads(sid) == 1


def test_reconcile_does_not_delete_when_deletion_is_off(rig: Rig) -> None:
    sid = rig.due(3.0)
    jobs = rig.jobs()
    assert jobs.sweep_downloads() == 1
    assert jobs.reconcile() == 0
    assert rig.media.requests("DELETE") == []
    assert rig.media.has(sid)


# ---- reconciliation -------------------------------------------------------------------------------------


def test_a_recording_reported_without_a_status_callback_is_fetched_once_old_enough(
    rig: Rig, caller: TwilioCaller
) -> None:
    rec = rig.hosted(3.0)
    walk(caller, *FULL_CALL, rec, "1")  # the action came; the status callback never does
    hang_up(caller)
    row = rig.recording(rec.sid)
    assert (row.status, row.storage_status, row.next_attempt_at) == ("reported", "pending", None)
    jobs = rig.jobs()
    rig.clock.to(row.created_at + timedelta(seconds=FAST.reconcile_after_s - 1))
    assert jobs.sweep_downloads() == 0
    assert jobs.reconcile() == 0
    assert rig.media.requests() == []

    rig.clock.to(row.created_at + timedelta(seconds=FAST.reconcile_after_s + 1))
    assert jobs.sweep_downloads() == 1
    assert jobs.sweep_downloads() == 0
    assert rig.downloads(rec.sid) == 1
    assert_one_private_copy(rig, rec.sid, generate_wav(3.0))
    assert len(rig.transcripts(rec.sid)) == 1
    # The callback arriving late after all changes nothing.
    assert completed(caller, rec) == 200
    assert jobs.sweep_downloads() == 0
    assert rig.downloads(rec.sid) == 1
    assert rig.recording(rec.sid).status == "completed"


def test_a_stored_recording_without_a_transcript_row_gets_one(rig: Rig) -> None:
    first, second = rig.due(2.0), rig.due(2.0)
    jobs = rig.jobs()
    assert jobs.sweep_downloads() == 2
    with get_database(rig.app).session() as session:
        # As a crash between the two steps, or a row lost by hand, would leave it.
        recording_id = select(Recording.id).where(Recording.recording_sid == first).scalar_subquery()
        session.execute(delete(Transcript).where(Transcript.recording_id == recording_id))
    assert rig.transcripts(first) == []
    assert jobs.reconcile() == 1
    [transcript] = rig.transcripts(first)
    assert (transcript.status, transcript.language) == (TranscriptStatus.QUEUED, "th")
    assert len(rig.transcripts(second)) == 1
    assert jobs.reconcile() == 0
    assert rig.count(Transcript) == 2
    assert jobs.sweep_transcripts() == 2
    assert {t.status for t in [*rig.transcripts(first), *rig.transcripts(second)]} == {"no_model"}


# ---- claims ------------------------------------------------------------------------------------------


def test_two_workers_sweeping_together_download_each_recording_once(rig: Rig) -> None:
    sids = [rig.due(1.0) for _ in range(12)]
    for sid in sids:
        rig.media.inject(sid, "slow", delay_s=0.15)  # downloads overlap the other worker's claims
    settings = JobSettings(download_attempts=3, backoff_base_s=1.0, lease_s=60.0, batch=3)
    workers = [rig.jobs(settings, worker_id="worker-a"), rig.jobs(settings, worker_id="worker-b")]
    start = threading.Barrier(2)

    def drain(jobs: TranscriptionJobs) -> int:
        start.wait(timeout=10)
        done = 0
        while n := jobs.sweep_downloads():
            done += n
        return done

    with ThreadPoolExecutor(max_workers=2) as threads:
        done = [f.result() for f in [threads.submit(drain, jobs) for jobs in workers]]
    assert sum(done) == 12
    assert min(done) > 0, done  # both really worked
    assert [rig.downloads(sid) for sid in sids] == [1] * 12
    assert {str(rig.recording(sid).storage_status) for sid in sids} == {"stored"}
    assert len(rig.stored_files()) == 12
    assert rig.count(Transcript) == 12
    assert all(rig.recording(sid).claimed_by is None for sid in sids)

    # The transcripts too: each done once, by one of them.
    start = threading.Barrier(2)

    def transcribe_all(jobs: TranscriptionJobs) -> int:
        start.wait(timeout=10)
        done = 0
        while n := jobs.sweep_transcripts():
            done += n
        return done

    with ThreadPoolExecutor(max_workers=2) as threads:
        transcribed = [f.result() for f in [threads.submit(transcribe_all, w) for w in workers]]
    assert sum(transcribed) == 12
    with get_database(rig.app).session() as session:
        rows = session.scalars(select(Transcript)).all()
        assert {(t.status, t.attempts) for t in rows} == {("no_model", 1)}


def test_a_claim_whose_lease_ran_out_is_taken_over(rig: Rig) -> None:
    sid = rig.due(2.0)
    lease = timedelta(seconds=FAST.lease_s)
    with get_database(rig.app).session() as session:
        # A worker claimed it and died before downloading.
        session.execute(
            update(Recording)
            .where(Recording.recording_sid == sid)
            .values(claimed_by="dead-host:4242", claimed_until=rig.clock() + lease)
        )
    jobs = rig.jobs(worker_id="worker-b")
    assert jobs.sweep_downloads() == 0  # the lease still holds
    rig.clock.advance(FAST.lease_s - 1)
    assert jobs.sweep_downloads() == 0
    assert rig.media.requests() == []

    rig.clock.advance(2)
    assert jobs.sweep_downloads() == 1
    assert rig.downloads(sid) == 1
    row = rig.recording(sid)
    assert (row.storage_status, row.claimed_by, row.claimed_until) == (StorageStatus.STORED, None, None)

    # Its transcript, claimed by a worker that died mid-job, is taken over the same way.
    with get_database(rig.app).session() as session:
        session.execute(
            update(Transcript).values(
                claimed_by="dead-host:4242", claimed_until=rig.clock() + lease, attempts=1
            )
        )
    assert jobs.sweep_transcripts() == 0
    rig.clock.advance(FAST.lease_s + 1)
    assert jobs.sweep_transcripts() == 1
    [transcript] = rig.transcripts(sid)
    assert (transcript.status, transcript.attempts, transcript.claimed_by) == ("no_model", 2, None)
