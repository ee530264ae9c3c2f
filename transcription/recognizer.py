"""The one place that talks to Vosk: load a model folder and recognise 16-bit mono PCM with word timings."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any, Final

import vosk

from transcription.engine import Recognition, Segment, Word

# Bytes handed to AcceptWaveform at a time: 4000 (125 ms at 16 kHz) is what vosk-transcriber feeds. Vosk
# checks for an utterance end after every chunk, so the chunk size can move segment boundaries and with them
# the words; keeping the peer's size keeps transcripts comparable, and the per-call cost is negligible.
CHUNK_BYTES: Final = 4000

# Kaldi dithers MFCC input with noise drawn from the C library's global rand(), so a recognition's words
# depend on every rand() call made before it in the process (model loading makes ~18,000). See
# alphacep/vosk-api#660 and #868: "results differ between runs, but not between fresh processes".
_FRESH_SEED: Final = 1  # glibc's rand() state before any srand()
_MAX_REPLAY: Final = 10_000_000


class VoskModel:
    """A loaded Vosk model: shared by threads of one process, never pickled or sent to another."""

    def __init__(self, path: Path) -> None:
        # Never Model(lang=...) or Model(model_name=...): they download, and exit the process on failure.
        vosk.SetLogLevel(-1)
        try:
            self._model: Any = vosk.Model(str(path))
        except Exception as exc:  # libvosk says only "Failed to create a model"
            raise RuntimeError(f"Vosk could not load the model at {path}: {exc}") from exc
        self.path = path


class DitherState:
    """Puts the C rand() state back where it was right after the models loaded, before each recognition.

    Every job then sees the dither noise a freshly started Vosk process sees: with a new recognizer the same
    recording always gives the same words, whatever the process ran before, and a one-model process matches
    a fresh `vosk-transcriber` word for word. (Without this, repeated runs differ by about 12 % of words.)
    A no-op where the C library cannot be reached.
    """

    def __init__(self) -> None:
        self._libc: ctypes.CDLL | None = None
        self._calls = 0
        try:
            self._libc = ctypes.CDLL("libc.so.6")
        except OSError:
            return
        # Count the rand() calls made since the fresh state (model loading) by replaying from it.
        target = self._libc.rand()
        self._libc.srand(_FRESH_SEED)
        for calls in range(_MAX_REPLAY):
            if self._libc.rand() == target:
                self._calls = calls
                break
        self.restore()

    def restore(self) -> None:
        if self._libc is None:
            return
        self._libc.srand(_FRESH_SEED)
        for _ in range(self._calls):
            self._libc.rand()


def recognize(
    model: VoskModel, pcm: bytes, sample_rate: int, *, chunk_bytes: int = CHUNK_BYTES
) -> Recognition:
    """Recognise int16 little-endian mono PCM at `sample_rate` (the model's own rate) with a new recognizer.

    Word times are clamped into the audio (Kaldi reports ends on its 30 ms frame grid, which can overshoot the
    last sample) and confidences into [0, 1].
    """
    return Recognizer(model, sample_rate, chunk_bytes=chunk_bytes).recognize(pcm)


class Recognizer:
    """A KaldiRecognizer kept from one recording to the next; for one thread at a time.

    With a lookahead graph (graph/HCLr.fst + graph/Gr.fst, as small Vosk models have) each KaldiRecognizer
    composes the graph lazily and caches what it expands. A new recognizer per recording starts that cache
    cold and pays about a third more CPU; reusing one keeps it. Everything else restarts after FinalResult():
    a new decoder, feature pipeline and i-vector state, so the words are those a new recognizer gives. Only
    the clock carries on (Vosk offsets word times by all samples seen before), which recognize() takes off.
    The cache grows with use: the pool replaces its processes after a number of jobs.
    """

    def __init__(self, model: VoskModel, sample_rate: int, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._model = model
        self.sample_rate = sample_rate
        self._chunk_bytes = chunk_bytes
        self._kaldi: Any = None
        self._samples_before = 0

    def recognize(self, pcm: bytes) -> Recognition:
        if self._kaldi is None:
            self._kaldi = vosk.KaldiRecognizer(self._model._model, float(self.sample_rate))
            self._kaldi.SetWords(True)  # before the first chunk: options set later are ignored
            self._samples_before = 0
        kaldi, offset_s = self._kaldi, self._samples_before / self.sample_rate
        # Until this recording is through, the recognizer's state is unknown: a failure discards it.
        self._kaldi = None
        results: list[dict[str, Any]] = []
        for offset in range(0, len(pcm), self._chunk_bytes):
            if kaldi.AcceptWaveform(pcm[offset : offset + self._chunk_bytes]):
                results.append(json.loads(kaldi.Result()))
        results.append(json.loads(kaldi.FinalResult()))
        self._kaldi = kaldi
        self._samples_before += len(pcm) // 2
        return _combine(results, duration_s=len(pcm) / 2 / self.sample_rate, offset_s=offset_s)


class VoskEngine:
    """The Engine of transcription.engine for a Vosk model: one model, and a recognizer kept if asked.

    `reuse_recognizers` keeps one Recognizer between recordings (see Recognizer); otherwise each recording
    gets a new one. The dither state (DitherState) is the transcriber process's business, not the engine's:
    it must be captured after every model of the process has loaded.
    """

    def __init__(self, path: Path, sample_rate: int, *, reuse_recognizers: bool = True) -> None:
        self.model = VoskModel(path)
        self._sample_rate = sample_rate
        self._reuse = reuse_recognizers
        self._kept: Recognizer | None = None

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def transcribe(self, pcm: bytes) -> Recognition:
        recognizer = self._kept or Recognizer(self.model, self._sample_rate)
        if self._reuse:
            self._kept = recognizer
        return recognizer.recognize(pcm)


def _combine(results: list[dict[str, Any]], *, duration_s: float, offset_s: float = 0.0) -> Recognition:
    texts = [str(result.get("text", "")).strip() for result in results]
    words: list[Word] = []
    for result in results:
        for item in result.get("result", []):
            start = float(item["start"]) - offset_s
            start = min(max(start, words[-1].start if words else 0.0), duration_s)
            end = min(max(float(item["end"]) - offset_s, start), duration_s)
            words.append(Word(str(item["word"]), start, end, min(max(float(item["conf"]), 0.0), 1.0)))
    mean = sum(word.conf for word in words) / len(words) if words else None
    return Recognition(
        text=" ".join(text for text in texts if text),
        words=words,
        mean_confidence=mean,
        segments=_segments(results, texts, words),
    )


def _segments(results: list[dict[str, Any]], texts: list[str], words: list[Word]) -> list[Segment]:
    """One segment per Vosk utterance that has text, spanning its (clamped) words."""
    segments: list[Segment] = []
    index = 0
    for result, text in zip(results, texts, strict=True):
        count = len(result.get("result", []))
        spoken = words[index : index + count]
        index += count
        if text and spoken:
            segments.append(Segment(text, spoken[0].start, spoken[-1].end))
    return segments
