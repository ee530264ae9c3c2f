"""Inside a transcriber process: load the models once, then serve jobs on one pipe per concurrent slot.

A Vosk process has one slot. A Whisper-only process may have several: one WhisperModel(num_workers=N) is
shared, and each slot's thread calls its transcribe() (faster-whisper's way to run transcriptions in
parallel; the weights are loaded once, and CTranslate2 releases the GIL while it decodes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Final, Literal

from transcription.audio import AudioUnreadable, decode
from transcription.engine import Engine, EngineSpec, Word, load_engine
from transcription.recognizer import DitherState
from transcription.registry import ModelError

Status = Literal["done", "no_speech", "audio_unreadable", "no_model", "failed", "timeout"]

_PARENT_CHECK_S: Final = 1.0


@dataclass(frozen=True)
class ChildSettings:
    """What a child needs to start: plain data, since models themselves cannot be pickled."""

    specs: list[EngineSpec]
    max_audio_s: float


@dataclass(frozen=True)
class JobResult:
    """Sent from a child to the pool: plain data, small whatever the audio size."""

    status: Status
    reason: str | None = None
    detail: str | None = None
    text: str = ""
    words: list[Word] = field(default_factory=list)
    mean_confidence: float | None = None
    upsampled_from: int | None = None
    audio_duration_s: float | None = None


def child_main(conns: list[Connection], settings: ChildSettings, parent: int) -> None:
    """The process's body: one thread per slot (pipe), all sharing the engines loaded here once."""
    # Ctrl-C reaches the whole process group; the parent decides when children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()
    engines: dict[str, Engine] = {}
    refused: dict[str, str] = {}  # a model whose bytes are not the pinned ones: its jobs end no_model
    try:
        for spec in settings.specs:
            try:
                # A Whisper model gets one worker per slot: concurrent transcribe() calls share its weights.
                engines[spec.language] = load_engine(dataclasses.replace(spec, num_workers=len(conns)))
            except ModelError as exc:
                refused[spec.language] = str(exc)
    except Exception as exc:
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.send(("load_failed", f"{type(exc).__name__}: {exc}"))
        return
    dither = DitherState()  # right after loading: nothing else may draw from rand() before it
    slots = [
        threading.Thread(target=_serve, args=(conn, engines, refused, dither, settings.max_audio_s))
        for conn in conns
    ]
    for slot in slots:
        slot.start()
    for slot in slots:
        slot.join()


def _serve(
    conn: Connection, engines: dict[str, Engine], refused: dict[str, str], dither: DitherState, max_s: float
) -> None:
    """One slot: jobs one after another on its pipe until the pool retires (None) or abandons (EOF) it."""
    try:
        conn.send(("ready", os.getpid()))
        while (message := conn.recv()) is not None:
            job_id, language, path = message
            source: Path | bytes = Path(path) if path is not None else conn.recv_bytes()
            engine = engines.get(language)
            if engine is None:
                result = JobResult("no_model", reason="no_model", detail=refused.get(language))
            else:
                result = run_job(engine, dither, source, max_s)
            conn.send(("result", job_id, result))
    except (EOFError, OSError):
        return
    except BaseException:
        # A slot that died silently would leave its job to time out: the whole process goes, as it did
        # when it ran one job, and the pool sees the loss at once.
        traceback.print_exc()
        os._exit(1)


def run_job(engine: Engine, dither: DitherState, source: Path | bytes, max_audio_s: float) -> JobResult:
    try:
        audio = decode(source, target_rate=engine.sample_rate, max_seconds=max_audio_s)
    except AudioUnreadable as exc:
        return JobResult("audio_unreadable", reason=exc.reason, detail=exc.message)
    except OSError as exc:
        return JobResult("failed", reason="unreadable_file", detail=f"{type(exc).__name__}: {exc}")
    try:
        # For Vosk's dither noise (a Vosk process has one slot); Whisper draws none from rand().
        dither.restore()
        recognition = engine.transcribe(audio.pcm)
    except Exception as exc:
        return JobResult("failed", reason="recognizer_error", detail=f"{type(exc).__name__}: {exc}")
    # An empty string is never a transcript.
    return JobResult(
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
