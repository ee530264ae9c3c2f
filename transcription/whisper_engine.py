"""The one place that talks to faster-whisper: load a CTranslate2 Whisper model, transcribe, guard the text.

Whisper invents text on silence, noise and tones ("ขอบคุณที่รับชม": thanks for watching). Everything it
returns passes guards first; what fails them is dropped, and a message left with nothing ends `no_speech`
rather than with invented words in front of staff.
"""

from __future__ import annotations

import os

# Before faster_whisper (and huggingface_hub under it) is imported: never look for anything online.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import unicodedata
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
from faster_whisper import WhisperModel

from transcription.engine import Recognition, Segment, Word

RATE: Final = 16000
BEAM_SIZE: Final = 5
# Whisper's own thresholds (openai/whisper transcribe.py): a segment the model itself thinks is silence
# (high no-speech probability) and decoded with little confidence is not speech; text that compresses
# better than 2.4 is a loop ("ครับ ครับ ครับ …").
NO_SPEECH_PROB: Final = 0.6
LOW_AVG_LOGPROB: Final = -1.0
MAX_COMPRESSION_RATIO: Final = 2.4
# Less speech than this kept by voice activity detection is a cough, a click or a breath, not a report.
MIN_SPEECH_S: Final = 0.3
# The script each language is written in. On speech it cannot follow (another language, a garbled line)
# Whisper forced to Thai emits a mix of scripts ("門อาวาเปาім… отп…"): a segment with letters of any script
# but the language's own and Latin (names, English words) is dropped.
SCRIPTS: Final = {"th": "THAI", "lo": "LAO", "km": "KHMER", "my": "MYANMAR"}


class WhisperEngine:
    """The Engine of transcription.engine for a CTranslate2 Whisper model, for one language."""

    def __init__(self, path: Path, language: str, *, cpu_threads: int = 1) -> None:
        # A path loads with no network; a bare name would go to the Hugging Face hub.
        self._model: Any = WhisperModel(
            str(path), device="cpu", compute_type="int8", cpu_threads=cpu_threads, local_files_only=True
        )
        self.language = language.split("-")[0]  # the IVR's language: Whisper never guesses it
        self.path = path

    @property
    def sample_rate(self) -> int:
        return RATE

    def transcribe(self, pcm: bytes) -> Recognition:
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        segments, info = self._model.transcribe(
            audio,
            language=self.language,
            task="transcribe",
            beam_size=BEAM_SIZE,
            vad_filter=True,
            condition_on_previous_text=False,
            word_timestamps=True,
        )
        decoded = list(segments)  # the generator does the work
        speech_s = float(info.duration_after_vad or 0.0)
        if speech_s < MIN_SPEECH_S:
            return Recognition("", rejected=f"only {speech_s:.2f} s of speech after voice activity detection")
        return guard(decoded, phantoms(), self.language)


def guard(decoded: Iterable[Any], phantom_phrases: frozenset[str], language: str) -> Recognition:
    """Drop invented segments; a message left with nothing, or only with phantom phrases, has no text."""
    kept = []
    dropped: list[str] = []
    for segment in decoded:
        if segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < LOW_AVG_LOGPROB:
            dropped.append("no-speech probability")
        elif segment.compression_ratio > MAX_COMPRESSION_RATIO:
            dropped.append("repetition")
        elif foreign_script(segment.text, language):
            dropped.append("foreign script")
        elif segment.text.strip():
            kept.append(segment)
    if kept and all(normalise(segment.text) in phantom_phrases for segment in kept):
        return Recognition("", rejected="only phrases Whisper is known to invent on silence")
    if not kept:
        return Recognition("", rejected="segments dropped: " + (", ".join(dropped) or "none decoded"))
    words = [word for segment in kept for word in _words(segment.words or ())]
    mean = sum(word.conf for word in words) / len(words) if words else None
    return Recognition(
        text=" ".join(segment.text.strip() for segment in kept),
        words=words,
        mean_confidence=mean,
        segments=[
            Segment(segment.text.strip(), float(segment.start), float(segment.end)) for segment in kept
        ],
    )


def _words(pieces: Iterable[Any]) -> list[Word]:
    """Whisper's words for Thai are token pieces; a piece that starts with a combining mark (a vowel or
    tone mark above or below) joins the piece before it, so that none is shown as a lone diacritic.
    The joined piece keeps the lowest confidence of its parts."""
    words: list[Word] = []
    for piece in pieces:
        text = str(piece.word).strip()
        if not text:
            continue
        conf = min(max(float(piece.probability), 0.0), 1.0)
        if words and unicodedata.category(text[0]) == "Mn" and not str(piece.word)[0].isspace():
            last = words[-1]
            words[-1] = Word(last.word + text, last.start, float(piece.end), min(last.conf, conf))
        else:
            words.append(Word(text, float(piece.start), float(piece.end), conf))
    return words


def foreign_script(text: str, language: str) -> bool:
    """True when `text` has letters of a script that is neither `language`'s own nor Latin."""
    own = SCRIPTS.get(language)
    if own is None:
        return False
    for char in text:
        if unicodedata.category(char)[0] in "LM":
            script = unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]
            if script not in (own, "LATIN"):
                return True
    return False


def normalise(text: str) -> str:
    """Letters, marks and digits only (no spaces or punctuation), NFKC: สํา and สำ compare equal."""
    return "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c)[0] in "LMN")


@cache
def phantoms() -> frozenset[str]:
    """The maintained list of phrases Whisper invents (data/whisper_phantoms.txt beside this module)."""
    text = resources.files("transcription").joinpath("data/whisper_phantoms.txt").read_text("utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(normalise(line) for line in lines if line)
