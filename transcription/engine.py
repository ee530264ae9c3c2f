"""The recognizer interface both engines implement, and loading the engine a model needs (once per process).

An engine is loaded once in a transcriber process and then transcribes one recording at a time (a Whisper
engine as many at once as it has workers): 16-bit
little-endian mono PCM at the engine's own rate in, text, segments and words with times and confidences
out. The engines' modules are imported here only when a model of theirs is loaded, so a process serving
only Vosk models never imports faster-whisper, and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Literal, Protocol

EngineKind = Literal["vosk", "whisper"]
ENGINES: tuple[EngineKind, ...] = ("vosk", "whisper")

# The distribution whose version is recorded with every transcript of an engine.
_DISTRIBUTIONS: dict[EngineKind, str] = {"vosk": "vosk", "whisper": "faster-whisper"}


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    conf: float


@dataclass(frozen=True)
class Segment:
    """A stretch of speech the engine decoded as one piece (a Vosk utterance, a Whisper segment)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Recognition:
    text: str
    words: list[Word] = field(default_factory=list)
    mean_confidence: float | None = None
    segments: list[Segment] = field(default_factory=list)
    # Why an engine's guard dropped everything it heard (a sentence for logs), or None.
    rejected: str | None = None


class Engine(Protocol):
    """A loaded model; not shared between processes (models cannot be pickled)."""

    @property
    def sample_rate(self) -> int:
        """The rate of the PCM transcribe() takes."""
        ...

    def transcribe(self, pcm: bytes) -> Recognition:
        """Recognise int16 little-endian mono PCM at `sample_rate`; "" text means nothing was said."""
        ...


@dataclass(frozen=True)
class EngineSpec:
    """What a transcriber process needs to load one language's engine: plain data, picklable."""

    language: str
    engine: EngineKind
    path: str
    sample_rate: int
    # For a model whose bytes are known (the shipped Whisper base): checked before every load.
    sha256: str | None = None
    size_bytes: int | None = None
    cpu_threads: int = 1
    # Whisper: how many transcribe() calls may run at once on the one loaded model (its slots).
    num_workers: int = 1
    reuse_recognizers: bool = True


def engine_label(kind: EngineKind) -> str:
    """The engine and version recorded with every transcript, e.g. "vosk 0.3.45"."""
    name = _DISTRIBUTIONS[kind]
    return f"{name} {metadata.version(name)}"


def load_engine(spec: EngineSpec) -> Engine:
    """Load a model for this process; ModelError when a pinned model's bytes are not the pinned ones."""
    if spec.engine == "vosk":
        from transcription.recognizer import VoskEngine  # only where Vosk is needed

        return VoskEngine(Path(spec.path), spec.sample_rate, reuse_recognizers=spec.reuse_recognizers)
    from transcription.registry import verify_pinned
    from transcription.whisper_engine import WhisperEngine  # the one faster_whisper user

    if spec.sha256 is not None and spec.size_bytes is not None:
        verify_pinned(Path(spec.path), spec.sha256, spec.size_bytes)
    return WhisperEngine(
        Path(spec.path), spec.language, cpu_threads=spec.cpu_threads, num_workers=spec.num_workers
    )
