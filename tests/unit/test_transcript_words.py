"""Transcript words for people: Thai segmented by PyThaiNLP, engine confidences mapped onto the words,
the corrected transcript compared word by word, and the tokenizer loaded lazily, offline, writing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cases.transcript_words import (
    Change,
    ShownWord,
    compare,
    is_machine_draft,
    marked_words,
    segment,
    words,
)

ROOT = Path(__file__).resolve().parents[2]

# What Whisper base made of tests/data/thai/common_voice_th_25686161.wav at 16 kHz: the text as stored,
# and its "words", which for Thai are token pieces ("เดิ" + "น" + "ท" + "าง" is เดินทาง), with confidences.
WHISPER_TEXT = "มันเป็นเรื่องที่ดี ที่กังเดินทางยอนเวลาไม่ได้มีอยู่จริง"
WHISPER_PIECES = [
    ("มั", 0.86), ("น", 0.96), ("เป็", 0.96), ("น", 0.99), ("เรื่", 0.67), ("อง", 0.92), ("ที่", 0.94),
    ("ดี", 0.95), ("ที่", 0.76), ("กั", 0.57), ("ง", 0.53), ("เดิ", 0.45), ("น", 0.96), ("ท", 0.62),
    ("าง", 0.73), ("ย", 0.82), ("อน", 0.35), ("เว", 0.86), ("ล", 0.98), ("า", 0.89), ("ไม่", 0.95),
    ("ได้", 0.59), ("มี", 0.84), ("อยู่", 0.78), ("จ", 0.92), ("ริ", 0.91), ("ง", 1.0),
]  # fmt: skip


def pieces(pairs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"word": w, "start": i * 0.2, "end": i * 0.2 + 0.2, "conf": c} for i, (w, c) in enumerate(pairs)]


# ---- segmentation -----------------------------------------------------------------------------------------


def test_thai_is_segmented_into_dictionary_words_with_their_places() -> None:
    text = "มีนักเรียนถูกรังแกที่โรงเรียนทุกวัน"
    tokens = segment(text, "th")
    assert [t.text for t in tokens] == ["มี", "นักเรียน", "ถูก", "รังแก", "ที่", "โรงเรียน", "ทุกวัน"]
    assert all(text[t.start : t.end] == t.text for t in tokens)
    assert tokens[-1].end == len(text)


def test_spaces_are_not_words_and_latin_words_and_digits_stay_whole() -> None:
    text = "ครู ABC สอน  3 ชั่วโมง"
    tokens = segment(text, "th")
    assert [t.text for t in tokens] == ["ครู", "ABC", "สอน", "3", "ชั่วโมง"]
    assert all(text[t.start : t.end] == t.text for t in tokens)


def test_other_languages_are_split_at_whitespace_only() -> None:
    # newmm would cut the Thai run; a Korean call's text is words between spaces, as Vosk gave them.
    assert words("엄마 와  아빠\nโรงเรียน", "ko") == ["엄마", "와", "아빠", "โรงเรียน"]
    assert words("", "th") == [] and words("   ", "th") == []


# ---- confidences onto words -------------------------------------------------------------------------------


def test_whisper_pieces_become_words_each_as_doubtful_as_its_most_doubtful_piece() -> None:
    shown = marked_words(WHISPER_TEXT, "th", pieces(WHISPER_PIECES))
    assert [w.text for w in shown] == words(WHISPER_TEXT, "th")
    assert "มั" not in [w.text for w in shown] and "เดินทาง" in [w.text for w in shown]
    by_word = {w.text: w for w in shown}
    # เดินทาง is เดิ (0.45) + น + ท + าง: low, with the lowest confidence of its pieces.
    assert by_word["เดินทาง"] == ShownWord("เดินทาง", True, 0.45)
    assert by_word["มัน"] == ShownWord("มัน", False, 0.86)
    assert by_word["เวลา"] == ShownWord("เวลา", False, 0.86)
    assert [w.text for w in shown if w.low] == ["กัง", "เดินทาง", "ยอน", "ได้"]


def test_a_low_piece_across_a_word_boundary_marks_both_words() -> None:
    # "นักเรียน" + "ถูก" with a piece "ยนถู" spanning the two words.
    text = "นักเรียนถูกรังแก"
    shown = marked_words(text, "th", pieces([("นักเรี", 0.9), ("ยนถู", 0.3), ("ก", 0.9), ("รังแก", 0.95)]))
    assert shown == [
        ShownWord("นักเรียน", True, 0.3),
        ShownWord("ถูก", True, 0.3),
        ShownWord("รังแก", False, 0.95),
    ]


def test_a_piece_the_text_does_not_hold_is_left_out_and_the_rest_still_lines_up() -> None:
    text = "มีนักเรียนถูกรังแก"
    shown = marked_words(text, "th", pieces([("มี", 0.9), ("\ufffd", 0.1), ("นักเรียน", 0.9), ("รังแก", 0.2)]))
    assert shown == [
        ShownWord("มี", False, 0.9),
        ShownWord("นักเรียน", False, 0.9),
        ShownWord("ถูก", False, None),  # no engine word there
        ShownWord("รังแก", True, 0.2),
    ]


def test_a_vosk_transcript_keeps_its_own_words_and_marks() -> None:
    words_ = [{"word": "엄마", "conf": 0.95}, {"word": "와", "conf": 0.4}, {"word": "아빠", "conf": 1}]
    assert marked_words("엄마 와 아빠", "ko", words_) == [
        ShownWord("엄마", False, 0.95),
        ShownWord("와", True, 0.4),
        ShownWord("아빠", False, 1.0),
    ]
    # No engine words (or no confidences): the words are shown, none marked.
    assert marked_words("엄마 와", "ko", None) == [
        ShownWord("엄마", False, None),
        ShownWord("와", False, None),
    ]
    assert marked_words("เวลา", "th", [{"word": "เวลา"}]) == [ShownWord("เวลา", False, None)]


# ---- the correction against the machine ------------------------------------------------------------------


def test_the_correction_is_compared_word_by_word() -> None:
    corrected = "มันเป็นเรื่องที่ดี ที่การเดินทางย้อนเวลาไม่ได้มีอยู่จริง"
    changes = compare(WHISPER_TEXT, corrected, "th")
    changed = [c for c in changes if c.kind != "same"]
    assert changed == [
        Change("removed", "กัง"),
        Change("added", "การ"),
        Change("removed", "ยอน"),
        Change("added", "ย้อน"),
    ]
    assert [c.text for c in changes if c.kind != "removed"] == words(corrected, "th")
    assert [c.text for c in changes if c.kind != "added"] == words(WHISPER_TEXT, "th")


def test_spacing_alone_is_no_change_and_a_new_word_is_added() -> None:
    assert {c.kind for c in compare("มีนักเรียน ถูกรังแก", "มี นักเรียนถูก รังแก", "th")} == {"same"}
    assert compare("มีนักเรียน", "มีนักเรียนสองคน", "th")[2:] == [Change("added", "สอง"), Change("added", "คน")]


def test_only_a_whisper_transcript_is_a_machine_draft() -> None:
    assert is_machine_draft("faster-whisper 1.2.1")
    assert not is_machine_draft("vosk 0.3.45")
    assert not is_machine_draft(None)


# ---- loading ---------------------------------------------------------------------------------------------

_LAZY_CHILD = """
import json, os, socket, sys
def refuse(*args, **kwargs):
    raise AssertionError(f"network use while segmenting: {args!r}")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from cases import transcript_words
seen = {"at_import": "pythainlp" in sys.modules}
transcript_words.segment("엄마 와 아빠", "ko")
seen["after_korean"] = "pythainlp" in sys.modules
seen["thai"] = transcript_words.words("ไปโรงเรียน", "th")
seen["after_thai"] = "pythainlp" in sys.modules
print(json.dumps(seen, ensure_ascii=False))
"""


def test_the_thai_tokenizer_loads_on_first_thai_text_offline_and_writes_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHAINLP_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", _LAZY_CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"at_import": False, "after_korean": False, "thai": ["ไป", "โรงเรียน"], "after_thai": True}
    assert list(tmp_path.iterdir()) == []  # no ~/pythainlp-data
