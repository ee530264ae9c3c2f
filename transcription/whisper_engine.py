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

import re
import unicodedata
import zlib
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
# better than 2.4 is a loop ("ครับ ครับ ครับ …"), measured as compression_ratio() below does.
NO_SPEECH_PROB: Final = 0.6
LOW_AVG_LOGPROB: Final = -1.0
MAX_COMPRESSION_RATIO: Final = 2.4
# Silero VAD (faster-whisper's) at its default threshold of 0.5 misses much of a phone line's speech: on a
# 120 s message of real Thai clips at 8 kHz μ-law (300-3400 Hz) it kept 36 s of ~90 s spoken, the quieter
# speaker almost entirely, and the transcript lost 63% of its characters; at 0.25 it kept 82 s (CER 23%,
# as good as no VAD at all), and still nothing of white noise, a hum or a tone (bench/whisper_thai.py).
# A child who whispers must not be cut out before Whisper even hears them.
VAD_THRESHOLD: Final = 0.25
# Less speech than this kept by voice activity detection is a cough, a click or a breath, not a report.
MIN_SPEECH_S: Final = 0.3
# The script each language is written in. On speech it cannot follow (another language, a garbled line)
# Whisper forced to Thai emits a mix of scripts ("門อาวาเปาім… отп…"): a segment with letters of any script
# but the language's own and Latin (names, English words) is dropped.
SCRIPTS: Final = {"th": "THAI", "lo": "LAO", "km": "KHMER", "my": "MYANMAR"}
# Whisper's loop check is zlib's ratio over UTF-8 bytes, tuned on English (one byte a letter). A Thai letter
# is three UTF-8 bytes whose first two repeat (E0 B8, E0 B9), so ordinary Thai compresses like a loop: 30 s
# of a child talking, no word said twice, passes 2.4. faster-whisper then decodes it again at rising
# temperatures (several times slower, and freer to invent), and a guard on that figure would drop a real
# report as "repetition". Thai's own one-byte code page (TIS-620, cp874) puts it on English's footing:
# natural Thai ~1.2-1.8, a loop 2.5 and up. For these languages faster-whisper's check is off and ours,
# on the right bytes, decides.
CODECS: Final = {"th": "cp874"}
# A unit of 2-80 characters said three or more times in a row: Whisper's loop, or a caller repeating a plea.
_REPEATED = re.compile(r"(\S.{1,79}?)(?:\s*\1){2,}", re.DOTALL)


class WhisperEngine:
    """The Engine of transcription.engine for a CTranslate2 Whisper model, for one language."""

    def __init__(self, path: Path, language: str, *, cpu_threads: int = 1, num_workers: int = 1) -> None:
        # A path loads with no network; a bare name would go to the Hugging Face hub. With num_workers > 1,
        # that many threads may call transcribe() at once on the one copy of the weights.
        self._model: Any = WhisperModel(
            str(path),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=True,
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
            vad_parameters={"threshold": VAD_THRESHOLD},
            condition_on_previous_text=False,
            word_timestamps=True,
            compression_ratio_threshold=None if self.language in CODECS else MAX_COMPRESSION_RATIO,
        )
        decoded = list(segments)  # the generator does the work
        speech_s = float(info.duration_after_vad or 0.0)
        if speech_s < MIN_SPEECH_S:
            return Recognition("", rejected=f"only {speech_s:.2f} s of speech after voice activity detection")
        return guard(decoded, phantoms(), self.language)


def guard(decoded: Iterable[Any], phantom_phrases: frozenset[str], language: str) -> Recognition:
    """Drop invented segments; a message left with nothing, or only with phantom phrases, has no text.

    A segment that loops keeps one turn of the loop when the rest of it reads as speech: a child saying
    "ช่วยด้วย" five times is heard once, never dropped; a segment that is still a loop after that goes.
    """
    kept: list[Segment] = []
    words: list[Word] = []
    dropped: list[str] = []
    for segment in decoded:
        said = text = str(segment.text).strip()
        if segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < LOW_AVG_LOGPROB:
            dropped.append("no-speech probability")
            continue
        if compression_ratio(text, language) > MAX_COMPRESSION_RATIO:
            text = collapse_repeats(text)
        if compression_ratio(text, language) > MAX_COMPRESSION_RATIO:
            dropped.append("repetition")
        elif foreign_script(text, language):
            dropped.append("foreign script")
        elif text:
            kept.append(Segment(text, float(segment.start), float(segment.end)))
            pieces = _words(segment.words or ())
            words.extend(pieces if text == said else aligned(pieces, text))
    if kept and all(normalise(segment.text) in phantom_phrases for segment in kept):
        return Recognition("", rejected="only phrases Whisper is known to invent on silence")
    if not kept:
        return Recognition("", rejected="segments dropped: " + (", ".join(dropped) or "none decoded"))
    mean = sum(word.conf for word in words) / len(words) if words else None
    return Recognition(
        text=" ".join(segment.text for segment in kept), words=words, mean_confidence=mean, segments=kept
    )


def compression_ratio(text: str, language: str) -> float:
    """zlib's ratio of `text`, over one byte a letter where the language has such a code page."""
    data = text.encode(CODECS.get(language, "utf-8"), errors="replace")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def collapse_repeats(text: str) -> str:
    """Every unit said three or more times in a row, said once."""
    return _REPEATED.sub(r"\1", text)


def aligned(words: list[Word], text: str) -> list[Word]:
    """The words that spell `text` (a segment's text with repeats collapsed), in order; the rest go."""
    target, at, kept = normalise(text), 0, []
    for word in words:
        piece = normalise(word.word)
        if piece and target.startswith(piece, at):
            kept.append(word)
            at += len(piece)
    return kept


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
