"""Transcriber processes: each loads its models once and decodes and recognises its jobs.

A native crash in libsndfile or Kaldi, a hang, or memory growth costs only a child process: the pool kills
and replaces it, retries its jobs once on the replacement, and the calling process carries on. A Vosk
process runs one job at a time; a Whisper-only process may run several at once on one copy of the weights.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from multiprocessing.context import SpawnContext
from pathlib import Path
from types import TracebackType
from typing import Any

from transcription.engine import EngineSpec, Word, engine_label
from transcription.pool_child import ChildSettings, JobResult, Status
from transcription.pool_process import RETIRE_GRACE_S, ChildLost, Slot, Transcriber, describe_exit
from transcription.registry import ModelInfo

log = logging.getLogger(__name__)

# Runs of one job at most: its own first run and retry, plus reruns after children other jobs lost.
_MAX_RUNS = 4

__all__ = ["PoolClosed", "Status", "TranscriberPool", "TranscriptOutcome"]


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
    # Transcriber runs: 0 when no child was needed, 2 when the first one was lost, up to 4 when another
    # job on the same child hung or crashed it (that loss does not spend this job's retry).
    attempts: int = 0
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PoolClosed(RuntimeError):
    """transcribe() was called after close()."""


class TranscriberPool:
    """Child processes that transcribe recordings; transcribe() is blocking and safe to call from threads.

    `size` jobs run at once. Each child loads every language's engine once at start (models cannot be
    pickled or shared between processes). A child serving only Whisper models runs up to
    `jobs_per_process` jobs at once on one WhisperModel(num_workers=N) whose weights its jobs share, so the
    pool starts ceil(size / jobs_per_process) children; a child with a Vosk model runs one job at a time
    (Vosk's fresh-process state is restored before each), so the pool starts `size` children.

    A job that outlives `job_timeout_s`, or whose child dies, is retried once on a fresh child and then
    reported as "timeout" or "failed"; the other jobs in flight on a killed child are retried the same way.
    Children are replaced after `max_jobs_per_process` jobs because Vosk's memory grows with use (Whisper's
    too, more slowly): the old one finishes its jobs in flight while the new one loads.

    `reuse_recognizers` keeps one Vosk recognizer per language in each child (see recognizer.Recognizer):
    about 1.6 times less CPU per recording with a lookahead-graph model. The words are a new recognizer's
    except, rarely, a low-confidence word where the search breaks a near-tie differently (1 word in 20
    files of the benchmark). False gives every job a new recognizer: slower, and the same recording then
    always gives exactly the same transcript. `cpu_threads` is what each Whisper job may use.
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
        jobs_per_process: int = 1,
    ) -> None:
        if job_timeout_s <= 0 or max_audio_s <= 0 or max_jobs_per_process < 1 or start_timeout_s <= 0:
            raise ValueError("timeouts and max_audio_s must be positive and max_jobs_per_process at least 1")
        if jobs_per_process < 1:
            raise ValueError("jobs_per_process must be at least 1")
        self._models = dict(models)
        self._job_timeout_s = job_timeout_s
        self._max_jobs = max_jobs_per_process
        self._start_timeout_s = start_timeout_s
        self._engines = {language: engine_label(info.engine) for language, info in self._models.items()}
        self._context: SpawnContext = multiprocessing.get_context("spawn")
        self._settings = ChildSettings(
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
        whisper_only = all(info.engine == "whisper" for info in self._models.values())
        self._slots_per_process = jobs_per_process if whisper_only else 1
        self._changed = threading.Condition()
        self._procs: list[Transcriber] = []  # the current children (not retired, not replaced)
        self._idle: list[Slot] = []
        self._busy: set[Slot] = set()
        self._retired: list[Transcriber] = []
        self._killed: set[Transcriber] = set()  # lost children whose replacement is on its way or in place
        self._closed = False
        # Without a model no job ever needs a child: start none.
        count = (size if size is not None else os.cpu_count() or 1) if self._models else 0
        if self._models and count < 1:
            raise ValueError("a pool with models needs at least one transcriber process")
        for first in range(0, count, self._slots_per_process):
            child = self._spawn(min(self._slots_per_process, count - first))
            self._procs.append(child)
            self._idle.extend(child.slots)

    # -- public ---------------------------------------------------------------------------------------

    @property
    def languages(self) -> list[str]:
        return sorted(self._models)

    @property
    def processes(self) -> int:
        """How many children the pool keeps: ceil(size / jobs per process)."""
        return len(self._procs)

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
                JobResult(
                    "no_model",
                    reason="no_model",
                    detail=f"no speech model is installed for {language!r}: listen to the recording",
                ),
                attempts=0,
            )
        timeout = timeout_s if timeout_s is not None else self._job_timeout_s
        result, attempts = self._run(language, source, timeout)
        return self._outcome(started, language, info.model_id, result, attempts=attempts)

    def _run(self, language: str, source: Path | bytes, timeout_s: float) -> tuple[JobResult, int]:
        """Run a job, retried once after its child is lost; a loss another job caused is not counted.

        A child killed because another of its jobs hung (or died on its own while another thread got there
        first) costs this job a rerun but not its retry, up to _MAX_RUNS runs in all: a job that hangs
        every time must not take its neighbours' retries with it.
        """
        slot = self._acquire()
        runs = own_losses = 0
        try:
            while True:
                runs += 1
                try:
                    slot.wait_ready(self._start_timeout_s)
                    result = slot.run(language, source, timeout_s)
                except ChildLost as exc:
                    log.warning("transcriber %s lost on run %d: %s", slot.pid, runs, exc)
                    try:
                        slot, caused_by_other = self._replace(slot)
                    except PoolClosed:
                        return JobResult(exc.status, reason="pool_closed", detail="the pool was closed"), runs
                    own_losses += not caused_by_other
                    if own_losses >= 2 or runs >= _MAX_RUNS:
                        detail = f"{exc} (run {runs}, the job's retry spent)"
                        return JobResult(exc.status, reason=exc.reason, detail=detail), runs
                    continue
                with self._changed:
                    slot.owner.jobs += 1
                return result, runs
        finally:
            self._release(slot)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until every idle child has loaded its models (a warm pool); raise TimeoutError if not."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self._start_timeout_s)
        while True:
            with self._changed:
                pending = [slot for slot in self._idle if not slot.poll_ready()]
                dead = {slot.owner for slot in pending if not slot.owner.process.is_alive()}
                if not pending:
                    return
            if dead:
                codes = ", ".join(f"{c.pid}: {describe_exit(c.process.exitcode)}" for c in dead)
                raise RuntimeError(f"transcriber(s) died while loading models ({codes})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} transcriber slot(s) still loading models")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """Process ids of the current children, idle and busy."""
        with self._changed:
            return sorted(child.pid for child in self._procs)

    def running(self) -> int:
        """How many jobs are on a child right now."""
        with self._changed:
            return len(self._busy)

    def busy_pids(self) -> list[int]:
        """Process ids of the children running a job right now."""
        with self._changed:
            return sorted({slot.pid for slot in self._busy})

    def close(self) -> None:
        """Stop every child: idle ones finish cleanly, busy ones are killed (their jobs end "failed")."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            busy = {slot.owner for slot in self._busy}
            children = {*self._procs, *busy}
            retired = list(self._retired)
            self._procs.clear()
            self._idle.clear()
            self._retired.clear()
            self._changed.notify_all()
        idle = [child for child in children if child not in busy]
        for child in idle:
            child.retire()
        for child in busy:
            child.kill()
        for child in [*idle, *retired]:
            child.finish(RETIRE_GRACE_S)

    def __enter__(self) -> TranscriberPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- children -------------------------------------------------------------------------------------

    def _spawn(self, slots: int) -> Transcriber:
        return Transcriber(self._context, self._settings, slots)

    def _succeed(self, child: Transcriber, successor: Transcriber) -> None:
        """Under the lock: `successor` takes `child`'s place; idle slots move now, busy ones on release."""
        child.successor = successor
        self._procs = [successor if current is child else current for current in self._procs]
        for slot in child.slots:
            if slot in self._idle:
                self._idle.remove(slot)
                self._idle.append(successor.slots[slot.index])
        self._changed.notify_all()

    def _replace(self, slot: Slot) -> tuple[Slot, bool]:
        """Kill a lost slot's child (once) and return its heir on the replacement; PoolClosed once closing.

        Every thread whose job was on the killed child comes here; only the first kills and spawns, the
        others wait for the replacement and take the slot of the same index on it. The flag is True for
        those others: the child was lost to another job.
        """
        child = slot.owner
        with self._changed:
            if self._closed:
                raise PoolClosed("the transcriber pool is closed")  # close() has ended the child
            kill = child not in self._killed
            self._killed.add(child)
            spawn = kill and child.successor is None  # a recycled child already has its successor
        if kill:
            child.kill()
        replacement = self._spawn(len(child.slots)) if spawn else None
        with self._changed:
            if self._closed:
                if replacement is not None:
                    replacement.kill()
                raise PoolClosed("the transcriber pool is closed")
            if replacement is not None:
                self._succeed(child, replacement)
            while child.successor is None and not self._closed:
                self._changed.wait()
            if self._closed:
                raise PoolClosed("the transcriber pool is closed")
            heir = slot.heir()
            self._busy.discard(slot)
            self._busy.add(heir)
            return heir, not kill

    def _acquire(self) -> Slot:
        with self._changed:
            while not self._idle and not self._closed:
                self._changed.wait()
            if self._closed:
                raise PoolClosed("the transcriber pool is closed")
            # A child that has finished loading beats one still loading its models.
            slot = next((slot for slot in self._idle if slot.poll_ready()), self._idle[0])
            self._idle.remove(slot)
            self._busy.add(slot)
            return slot

    def _release(self, slot: Slot) -> None:
        child = slot.owner
        with self._changed:
            self._busy.discard(slot)
            # A child killed for another slot's job: its replacement is on its way.
            while child in self._killed and child.successor is None and not self._closed:
                self._changed.wait()
            if self._closed:
                leftover = child
            else:
                leftover = None
                if child.successor is None and child.jobs >= self._max_jobs:
                    # Recycle: Vosk's memory grows with use. The old child frees its model while the new
                    # one loads, once its other jobs in flight are done.
                    self._succeed(child, self._spawn(len(child.slots)))
                self._idle.append(slot.heir())
                drained = not any(other in self._busy for other in child.slots)
                if child.successor is not None and drained and child not in self._killed:
                    child.retire()
                    self._retired.append(child)
                self._reap_retired()
                self._changed.notify()
        if leftover is not None:
            leftover.kill()

    def _reap_retired(self) -> None:
        for child in list(self._retired):
            if child.reaped():
                self._retired.remove(child)
        self._killed = {child for child in self._killed if child.successor is None}

    def _outcome(
        self, started: float, language: str, model_id: str | None, result: JobResult, *, attempts: int
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
