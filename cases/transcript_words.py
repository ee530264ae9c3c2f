"""The words of a transcript as people read them: Thai segmented by PyThaiNLP, confidences, corrections.

The engine's text is stored as it came (transcription.models.Transcript.text); this module only reads it.
Thai is written without spaces between words, and Whisper's "words" for Thai are sub-word token pieces
("เดิ", "น"), so words for people come from PyThaiNLP's dictionary tokenizer (newmm); the engine's pieces
are mapped onto them by their character spans to say which words were heard with low confidence. Other
languages are split at whitespace. The same segmentation lets the agent's corrected transcript be
compared with the machine one word by word.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

# Below this confidence an engine word is marked for the agent to check against the recording.
LOW_CONFIDENCE = 0.6
# How many characters past its expected place an engine word is looked for in the text (_engine_spans).
_SLACK = 8
Span = tuple[int, int, float | None]  # start, end, confidence


@dataclass(frozen=True)
class Token:
    """A word of a text and where it is: text == source[start:end]."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class ShownWord:
    """A word for the page; `conf` is the lowest confidence of the engine words it overlaps, if any."""

    text: str
    low: bool
    conf: float | None


@dataclass(frozen=True)
class Change:
    """One word of the comparison: in both texts, only the machine's (removed) or only the agent's (added)."""

    kind: Literal["same", "removed", "added"]
    text: str


@functools.cache
def _thai_tokenizer() -> Callable[[str], list[str]]:
    """newmm, imported on the first Thai text (its dictionary is read into a trie then, about a second).

    PyThaiNLP otherwise creates ~/pythainlp-data when imported and may fetch corpora it lacks: newmm's
    dictionary ships in the wheel, so nothing is written or downloaded (an operator may still say otherwise).
    """
    os.environ.setdefault("PYTHAINLP_READ_ONLY", "1")
    os.environ.setdefault("PYTHAINLP_OFFLINE", "1")
    from pythainlp.tokenize import word_tokenize

    return functools.partial(word_tokenize, engine="newmm", keep_whitespace=True)


def segment(text: str, language: str) -> list[Token]:
    """The words of `text` with their places: Thai ("th") by newmm, any other language at whitespace."""
    pieces = _thai_tokenizer()(text) if language == "th" and text.strip() else text.split()
    tokens: list[Token] = []
    at = 0
    for piece in pieces:
        if not piece.strip():
            continue
        start = text.find(piece, at)
        if start < 0:  # a tokenizer that changed the text: keep the word, placed after the last one
            start = at
        tokens.append(Token(piece, start, start + len(piece)))
        at = max(at, start + len(piece))
    return tokens


def words(text: str, language: str) -> list[str]:
    """Just the words of `text` (segment without the places): for display and search."""
    return [token.text for token in segment(text, language)]


def _engine_spans(text: str, engine_words: Iterable[Mapping[str, Any]]) -> list[Span]:
    """Each engine word's span in `text` and its confidence, in order.

    The engine's text is its words in order with spaces between some of them (Whisper strips the space
    that starts a piece; Vosk joins its words with one), so each word is found just after the previous
    one. A word not found there (a piece the text does not hold as such) is left out and the search goes
    on from the same place, looking that much further.
    """
    spans: list[Span] = []
    at = 0
    unmatched = 0
    for word in engine_words:
        piece = str(word.get("word", "")).strip()
        if not piece:
            continue
        start = text.find(piece, at, at + unmatched + _SLACK + len(piece))
        if start < 0:
            unmatched += len(piece)
            continue
        conf = word.get("conf")
        spans.append((start, start + len(piece), float(conf) if isinstance(conf, int | float) else None))
        at, unmatched = start + len(piece), 0
    return spans


def marked_words(
    text: str,
    language: str,
    engine_words: Iterable[Mapping[str, Any]] | None,
    threshold: float = LOW_CONFIDENCE,
) -> list[ShownWord]:
    """The words of the engine's text for people, each low when any engine word it overlaps is below
    `threshold` (a Thai word made of three Whisper pieces is as doubtful as its most doubtful piece)."""
    spans = _engine_spans(text, engine_words or ())
    shown: list[ShownWord] = []
    first = 0  # spans are in text order: skip those that end before the current word
    for token in segment(text, language):
        while first < len(spans) and spans[first][1] <= token.start:
            first += 1
        confs = []
        for start, end, conf in spans[first:]:
            if start >= token.end:
                break
            if conf is not None and end > token.start:
                confs.append(conf)
        lowest = min(confs) if confs else None
        shown.append(ShownWord(token.text, lowest is not None and lowest < threshold, lowest))
    return shown


def compare(machine: str, corrected: str, language: str) -> list[Change]:
    """The corrected transcript against the machine one, word by word: a replaced word is the machine's
    word removed, then the agent's added."""
    before, after = words(machine, language), words(corrected, language)
    changes: list[Change] = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            changes += [Change("same", w) for w in before[a0:a1]]
            continue
        changes += [Change("removed", w) for w in before[a0:a1]]
        changes += [Change("added", w) for w in after[b0:b1]]
    return changes


def is_machine_draft(engine: str | None) -> bool:
    """A Whisper transcript (engine "faster-whisper 1.2.1") is a rough draft for the agent, not a record:
    the shipped model has a character error rate of about 40% on Thai (issue 11)."""
    return (engine or "").startswith("faster-whisper")
