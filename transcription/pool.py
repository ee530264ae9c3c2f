"""Transcriber processes: each loads its models once and decodes and recognises one job at a time.

A native crash in libsndfile or Kaldi, a hang, or memory growth costs only a child process: the pool kills
and replaces it, retries the job once on the replacement, and the calling process carries on.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

from transcription.audio import AudioUnreadable, decode
from transcription.engine import Engine, EngineSpec, Word, engine_label, load_engine
from transcription.recognizer import DitherState
from transcription.registry import ModelError, ModelInfo

log = logging.getLogger(__name__)

Status = Literal["done", "no_speech", "audio_unreadable", "no_model", "failed", "timeout"]

# How long a retired child may take to free its model and exit before it is killed.
_RETIRE_GRACE_S: Final = 10.0
_PARENT_CHECK_S: Final = 1.0


@dataclass(frozen=True)
class TranscriptOutcome:
    """What happened to one recording. `reason` is a short code, `detail` a sentence for staff and logs."""

    status: Status
    reason: str | None
    text: str
    words: list[Word]
    mean_confidence: float | None
    engine: str
    model_id: str | None
    language: str
    upsampled_from: int | None
    audio_duration_s: float | None
    processing_ms: int  # wall time inside transcribe(), waiting for a free transcriber included
    attempts: int = 0  # transcriber runs: 0 when no child was needed, 2 when the first one was lost
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _ChildSettings:
    """What a child needs to start: plain data, since models themselves cannot be pickled."""

    specs: list[EngineSpec]
    max_audio_s: float


@dataclass(frozen=True)
class _JobResult:
    """Sent from a child to the pool: plain data, small whatever the audio size."""

    status: Status
    reason: str | None = None
    detail: str | None = None
    text: str = ""
    words: list[Word] = field(default_factory=list)
    mean_confidence: float | None = None
    upsampled_from: int | None = None
    audio_duration_s: float | None = None


class _ChildLost(Exception):
    """The child process running a job is gone or no longer trusted; the job may be retried elsewhere."""

    status: Status = "failed"
    reason = "crashed"


class _ChildHung(_ChildLost):
    status: Status = "timeout"
    reason = "timeout"


class _ChildUnstartable(_ChildLost):
    reason = "start_failed"


class PoolClosed(RuntimeError):
    """transcribe() was called after close()."""


class TranscriberPool:
    """Child processes that transcribe recordings; transcribe() is blocking and safe to call from threads.

    Each child loads every language's engine once at start (models cannot be pickled or shared between
    processes) and runs one job at a time. A job that outlives `job_timeout_s`, or whose child dies, is
    retried once on a fresh child and then reported as "timeout" or "failed". Children are replaced after
    `max_jobs_per_process` jobs because Vosk's memory grows with use (Whisper's too, more slowly).

    `reuse_recognizers` keeps one Vosk recognizer per language in each child (see recognizer.Recognizer):
    about 1.6 times less CPU per recording with a lookahead-graph model. The words are a new recognizer's
    except, rarely, a low-confidence word where the search breaks a near-tie differently (1 word in 20
    files of the benchmark). False gives every job a new recognizer: slower, and the same recording then
    always gives exactly the same transcript. `cpu_threads` is what each child's Whisper engine may use.
    """

    def __init__(
        self,
        models: Mapping[str, ModelInfo],
        *,
        size: int | None = None,
        job_timeout_s: float,
        max_audio_s: float,
        max_jobs_per_process: int,
        start_timeout_s: float = 180.0,
        reuse_recognizers: bool = True,
        cpu_threads: int = 1,
    ) -> None:
        if job_timeout_s <= 0 or max_audio_s <= 0 or max_jobs_per_process < 1 or start_timeout_s <= 0:
            raise ValueError("timeouts and max_audio_s must be positive and max_jobs_per_process at least 1")
        self._models = dict(models)
        self._job_timeout_s = job_timeout_s
        self._max_jobs = max_jobs_per_process
        self._start_timeout_s = start_timeout_s
        self._engines = {language: engine_label(info.engine) for language, info in self._models.items()}
        self._context: SpawnContext = multiprocessing.get_context("spawn")
        self._settings = _ChildSettings(
            specs=[
                EngineSpec(
                    language=info.language,
                    engine=info.engine,
                    path=str(info.path),
                    sample_rate=info.sample_rate,
                    sha256=info.sha256,
                    size_bytes=info.size_bytes if info.sha256 else None,
                    cpu_threads=cpu_threads,
                    reuse_recognizers=reuse_recognizers,
                )
                for info in self._models.values()
            ],
            max_audio_s=max_audio_s,
        )
        self._changed = threading.Condition()
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._retired: list[_Child] = []
        self._closed = False
        # Without a model no job ever needs a child: start none.
        count = (size if size is not None else os.cpu_count() or 1) if self._models else 0
        if self._models and count < 1:
            raise ValueError("a pool with models needs at least one transcriber process")
        self._idle.extend(self._spawn() for _ in range(count))

    # -- public ---------------------------------------------------------------------------------------

    @property
    def languages(self) -> list[str]:
        return sorted(self._models)

    def transcribe(
        self, source: Path | bytes, language: str, *, timeout_s: float | None = None
    ) -> TranscriptOutcome:
        """Decode and recognise one recording in `language`; never raises for bad audio or a lost child."""
        started = time.perf_counter()
        info = self._models.get(language)
        if info is None:
            return self._outcome(
                started,
                language,
                None,
                _JobResult(
                    "no_model",
                    reason="no_model",
                    detail=f"no speech model is installed for {language!r}: listen to the recording",
                ),
                attempts=0,
            )
        timeout = timeout_s if timeout_s is not None else self._job_timeout_s
        child = self._acquire()
        attempts = 0
        lost: _ChildLost | None = None
        try:
            for attempts in (1, 2):
                try:
                    child.wait_ready(self._start_timeout_s)
                    result = child.run(language, source, timeout)
                except _ChildLost as exc:
                    lost = exc
                    log.warning("transcriber %s lost on attempt %d: %s", child.pid, attempts, exc)
                    try:
                        child = self._replace(child)
                    except PoolClosed:
                        break
                    continue
                child.jobs += 1
                return self._outcome(started, language, info.model_id, result, attempts=attempts)
        finally:
            self._release(child)
        assert lost is not None
        detail = f"{lost} (attempt {attempts} of 2)" if not self._closed else "the pool was closed"
        return self._outcome(
            started,
            language,
            info.model_id,
            _JobResult(lost.status, reason="pool_closed" if self._closed else lost.reason, detail=detail),
            attempts=attempts,
        )

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until every idle child has loaded its models (a warm pool); raise TimeoutError if not."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self._start_timeout_s)
        while True:
            with self._changed:
                pending = [child for child in self._idle if not child.poll_ready()]
                dead = [child for child in pending if not child.process.is_alive()]
                if not pending:
                    return
            if dead:
                codes = ", ".join(f"{c.pid}: {_describe_exit(c.process.exitcode)}" for c in dead)
                raise RuntimeError(f"transcriber(s) died while loading models ({codes})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} transcriber(s) still loading models")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """Process ids of the current children, idle and busy."""
        with self._changed:
            return sorted(child.pid for child in [*self._idle, *self._busy])

    def busy_pids(self) -> list[int]:
        """Process ids of the children running a job right now."""
        with self._changed:
            return sorted(child.pid for child in self._busy)

    def close(self) -> None:
        """Stop every child: idle ones finish cleanly, busy ones are killed (their jobs end "failed")."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            idle, busy, retired = list(self._idle), list(self._busy), list(self._retired)
            self._idle.clear()
            self._retired.clear()
            self._changed.notify_all()
        for child in idle:
            child.retire()
        for child in busy:
            child.kill()
        for child in [*idle, *retired]:
            child.finish(_RETIRE_GRACE_S)

    def __enter__(self) -> TranscriberPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- children -------------------------------------------------------------------------------------

    def _spawn(self) -> _Child:
        return _Child(self._context, self._settings)

    def _replace(self, child: _Child) -> _Child:
        """Kill a lost child and put a fresh one in its place; PoolClosed once the pool is closing."""
        with self._changed:
            if self._closed:
                raise PoolClosed("the transcriber pool is closed")  # close() has ended the child
        child.kill()
        with self._changed:
            if self._closed:
                raise PoolClosed("the transcriber pool is closed")
        replacement = self._spawn()
        with self._changed:
            if not self._closed:
                self._busy.discard(child)
                self._busy.add(replacement)
                return replacement
        replacement.kill()
        raise PoolClosed("the transcriber pool is closed")

    def _acquire(self) -> _Child:
        with self._changed:
            while not self._idle and not self._closed:
                self._changed.wait()
            if self._closed:
                raise PoolClosed("the transcriber pool is closed")
            # A child that has finished loading beats one still loading its models.
            child = next((child for child in self._idle if child.poll_ready()), self._idle[0])
            self._idle.remove(child)
            self._busy.add(child)
            return child

    def _release(self, child: _Child) -> None:
        replacement = None
        if not self._closed and child.jobs >= self._max_jobs:
            # Recycle: Vosk's memory grows with use. The old child frees its model while the new one loads.
            child.retire()
            replacement = self._spawn()
        with self._changed:
            self._busy.discard(child)
            if self._closed:
                for leftover in (child, replacement):
                    if leftover is not None:
                        leftover.kill()
                return
            if replacement is not None:
                self._retired.append(child)
                child = replacement
            self._idle.append(child)
            self._reap_retired()
            self._changed.notify()

    def _reap_retired(self) -> None:
        for child in list(self._retired):
            if child.reaped():
                self._retired.remove(child)

    def _outcome(
        self, started: float, language: str, model_id: str | None, result: _JobResult, *, attempts: int
    ) -> TranscriptOutcome:
        return TranscriptOutcome(
            status=result.status,
            reason=result.reason,
            text=result.text,
            words=list(result.words),
            mean_confidence=result.mean_confidence,
            engine=self._engines.get(language, engine_label("vosk")),
            model_id=model_id,
            language=language,
            upsampled_from=result.upsampled_from,
            audio_duration_s=result.audio_duration_s,
            processing_ms=round((time.perf_counter() - started) * 1000),
            attempts=attempts,
            detail=result.detail,
        )


class _Child:
    """One transcriber process and the parent's end of its pipe; used by one thread at a time."""

    def __init__(self, context: SpawnContext, settings: _ChildSettings) -> None:
        self._conn, child_end = context.Pipe(duplex=True)
        # close() of the pool (main thread) and a job's thread may both end this child at once.
        self._conn_lock = threading.Lock()
        self.process: SpawnProcess = context.Process(
            target=_child_main,
            args=(child_end, settings, os.getpid()),
            name="transcriber",
            daemon=True,
        )
        self.process.start()
        # Only the child may hold its end: otherwise its death would never show up as EOF here.
        child_end.close()
        assert self.process.pid is not None
        self.pid: int = self.process.pid
        self.ready = False
        self.jobs = 0
        self._next_job = 0
        self._retired_at: float | None = None

    def poll_ready(self) -> bool:
        """True once the child has reported its models loaded; never blocks."""
        if not self.ready:
            try:
                if self._conn.poll(0):
                    self._take_ready(self._conn.recv())
            except (EOFError, OSError, _ChildLost):
                return False
        return self.ready

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            self._take_ready(self._receive(deadline, "load its models"))

    def run(self, language: str, source: Path | bytes, timeout_s: float) -> _JobResult:
        self._next_job += 1
        job_id = self._next_job
        try:
            if isinstance(source, Path):
                self._conn.send((job_id, language, str(source)))
            else:
                # The audio goes as raw bytes, not pickled inside the message: no copy into a pickle.
                self._conn.send((job_id, language, None))
                self._conn.send_bytes(source)
        except OSError as exc:
            raise _ChildLost(f"transcriber {self.pid} could not take the job: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._receive(deadline, f"finish the job within {timeout_s:g} s", hung=_ChildHung)
            if message[0] == "result" and message[1] == job_id:
                result: _JobResult = message[2]
                return result

    def _receive(self, deadline: float, task: str, hung: type[_ChildLost] = _ChildUnstartable) -> Any:
        remaining = deadline - time.monotonic()
        ready = wait([self._conn, self.process.sentinel], timeout=max(remaining, 0))
        if self._conn in ready:
            try:
                return self._conn.recv()
            except (EOFError, OSError):
                pass
        elif not ready:
            raise hung(f"transcriber {self.pid} did not {task}")
        self.process.join(1)
        raise _ChildLost(f"transcriber {self.pid} died ({_describe_exit(self.process.exitcode)})")

    def _take_ready(self, message: Any) -> None:
        if message[0] == "ready":
            self.ready = True
        elif message[0] == "load_failed":
            raise _ChildUnstartable(f"transcriber {self.pid} could not load its models: {message[1]}")

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self._close_conn()

    def _close_conn(self) -> None:
        """Close our end once, whichever thread gets here first (two closes race to EBADF)."""
        with self._conn_lock, contextlib.suppress(OSError):
            self._conn.close()

    def retire(self) -> None:
        """Ask the child to exit once it is idle; `reaped` or `finish` collects it."""
        with contextlib.suppress(OSError):  # already dead: nothing to ask
            self._conn.send(None)
        self._close_conn()
        self._retired_at = time.monotonic()

    def reaped(self) -> bool:
        if self.process.is_alive():
            if self._retired_at is not None and time.monotonic() - self._retired_at > _RETIRE_GRACE_S:
                self.process.kill()
            return False
        self.process.join(0)
        return True

    def finish(self, grace_s: float) -> None:
        self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# -- inside the child ---------------------------------------------------------------------------------


def _child_main(conn: Connection, settings: _ChildSettings, parent: int) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()
    # EOF or a broken pipe means the pool retired or abandoned this child: leave quietly.
    with contextlib.suppress(EOFError, OSError):
        engines: dict[str, Engine] = {}
        refused: dict[str, str] = {}  # a model whose bytes are not the pinned ones: its jobs end no_model
        try:
            for spec in settings.specs:
                try:
                    engines[spec.language] = load_engine(spec)
                except ModelError as exc:
                    refused[spec.language] = str(exc)
        except Exception as exc:
            conn.send(("load_failed", f"{type(exc).__name__}: {exc}"))
            return
        dither = DitherState()  # right after loading: nothing else may draw from rand() before it
        conn.send(("ready", os.getpid()))
        while (message := conn.recv()) is not None:
            job_id, language, path = message
            source: Path | bytes = Path(path) if path is not None else conn.recv_bytes()
            engine = engines.get(language)
            if engine is None:
                result = _JobResult("no_model", reason="no_model", detail=refused.get(language))
            else:
                result = _run_job(engine, dither, source, settings.max_audio_s)
            conn.send(("result", job_id, result))


def _run_job(engine: Engine, dither: DitherState, source: Path | bytes, max_audio_s: float) -> _JobResult:
    try:
        audio = decode(source, target_rate=engine.sample_rate, max_seconds=max_audio_s)
    except AudioUnreadable as exc:
        return _JobResult("audio_unreadable", reason=exc.reason, detail=exc.message)
    except OSError as exc:
        return _JobResult("failed", reason="unreadable_file", detail=f"{type(exc).__name__}: {exc}")
    try:
        dither.restore()  # for Vosk's dither noise; Whisper draws none from rand()
        recognition = engine.transcribe(audio.pcm)
    except Exception as exc:
        return _JobResult("failed", reason="recognizer_error", detail=f"{type(exc).__name__}: {exc}")
    # An empty string is never a transcript.
    return _JobResult(
        "done" if recognition.text else "no_speech",
        reason=None if recognition.text else "no_speech",
        detail=recognition.rejected,
        text=recognition.text,
        words=recognition.words,
        mean_confidence=recognition.mean_confidence,
        upsampled_from=audio.upsampled_from,
        audio_duration_s=audio.duration_s,
    )


def _exit_with_parent(parent: int) -> None:
    # Recognition runs in C with the GIL released, so this notices an orphaned child even mid-job.
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_S)
    os._exit(0)
