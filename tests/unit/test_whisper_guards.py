"""Whisper's guards on decoded segments, its Thai word pieces, and how a language's engine is chosen."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infra.config import Config, ConfigError, data_dir_from_env, engine_choices
from transcription.registry import ModelError
from transcription.whisper_engine import (
    collapse_repeats,
    compression_ratio,
    foreign_script,
    guard,
    normalise,
    phantoms,
)
from transcription.whisper_models import discover_engines


def segment(text: str, *, no_speech: float = 0.1, logprob: float = -0.3, ratio: float = 1.5) -> Any:
    # The fields of faster_whisper.transcribe.Segment that the guards read (plain data, not a mock).
    words = [SimpleNamespace(word=text, start=0.0, end=1.0, probability=0.8)]
    return SimpleNamespace(
        text=text,
        start=0.0,
        end=1.0,
        no_speech_prob=no_speech,
        avg_logprob=logprob,
        compression_ratio=ratio,
        words=words,
    )


def test_speech_passes_the_guards() -> None:
    result = guard([segment(" มีเด็กโดนทำร้าย"), segment("ที่โรงเรียน")], phantoms(), "th")
    assert result.text == "มีเด็กโดนทำร้าย ที่โรงเรียน" and result.rejected is None
    assert [s.text for s in result.segments] == ["มีเด็กโดนทำร้าย", "ที่โรงเรียน"]


@pytest.mark.parametrize(
    "decoded",
    [
        [segment("ขอบคุณที่รับชม")],
        [segment("ขอบคุณครับ"), segment(" สวัสดีค่ะ!")],  # nothing but phantoms, punctuation aside
        [segment("ขอบคุณสําหรับการรับชม")],  # สํา (nikhahit + sara aa) is สำ
        [segment("ครับ ครับ ครับ ครับ ครับ ครับ ครับ ครับ", ratio=3.1)],
        [segment("มีเด็ก", no_speech=0.9, logprob=-1.4)],
        [segment("門อาวาเปาім отп")],
        [],
    ],
)
def test_invented_text_leaves_no_text(decoded: list[Any]) -> None:
    result = guard(decoded, phantoms(), "th")
    assert (result.text, result.words, result.segments) == ("", [], [])
    assert result.rejected


# 217 characters a caller might say, no word twice: 2.35 by Whisper's UTF-8 measure, 1.2 on Thai's own bytes.
REPORT = (
    "สวัสดีค่ะ หนูเรียนอยู่ชั้นมัธยมศึกษาปีที่สอง โรงเรียนอยู่ที่อำเภอเมือง จังหวัดเชียงใหม่"
    " เมื่อวานตอนพักกลางวันมีรุ่นพี่สามคนมาล้อมหนูที่หลังอาคาร แล้วก็ตีหนูและเอาเงินไปค่ะ"
    " หนูไม่กล้าบอกครู เพราะเขาขู่ว่าถ้าบอกจะโดนอีก"
)


def test_long_thai_speech_is_not_taken_for_a_loop() -> None:
    # Whisper's own measure over UTF-8 bytes would call a little more of this a loop.
    longer = REPORT + " " + REPORT[:100]
    utf8 = len(longer.encode()) / len(__import__("zlib").compress(longer.encode()))
    assert utf8 > 2.4
    assert compression_ratio(longer, "th") < 2.0
    result = guard([segment(longer, ratio=utf8)], phantoms(), "th")
    assert result.text == longer and result.rejected is None


def test_a_plea_said_again_and_again_is_kept() -> None:
    plea = "ช่วยด้วย ช่วยด้วย ช่วยด้วย ช่วยด้วย ช่วยด้วย มีคนตีหนู"
    assert guard([segment(plea, ratio=4.4)], phantoms(), "th").text == plea


def test_a_loop_is_heard_once_with_its_words() -> None:
    plea = " ".join(["ช่วยด้วย"] * 16 + ["มีคนตีหนู"])
    pieces = [SimpleNamespace(word=f" {w}", start=float(i), end=i + 0.5, probability=0.9)
              for i, w in enumerate(plea.split())]  # fmt: skip
    decoded = segment(plea)
    decoded.words = pieces
    result = guard([decoded], phantoms(), "th")
    assert result.text == "ช่วยด้วย มีคนตีหนู"
    assert [(w.word, w.start) for w in result.words] == [("ช่วยด้วย", 0.0), ("มีคนตีหนู", 16.0)]


def test_collapse_keeps_what_is_said_once_or_twice() -> None:
    assert collapse_repeats("ไม่ ไม่ อยากไปโรงเรียน") == "ไม่ ไม่ อยากไปโรงเรียน"
    assert collapse_repeats("เขาตีหนู เขาตีหนู เขาตีหนู แล้วหนีไป") == "เขาตีหนู แล้วหนีไป"
    assert collapse_repeats(REPORT) == REPORT


def test_one_phrase_of_the_list_beside_real_speech_is_kept() -> None:
    result = guard([segment("มีเด็กโดนทำร้าย"), segment("ขอบคุณครับ")], phantoms(), "th")
    assert result.text == "มีเด็กโดนทำร้าย ขอบคุณครับ"


def test_a_high_no_speech_probability_alone_does_not_drop_confident_text() -> None:
    # Whisper's own rule: both a likely silence and a low log-probability.
    assert guard([segment("มีเด็ก", no_speech=0.9, logprob=-0.4)], phantoms(), "th").text == "มีเด็ก"


def test_scripts() -> None:
    assert not foreign_script("โทรมาจาก Facebook ครับ", "th")  # Latin: names and English words
    assert foreign_script("โทรมา отп", "th") and foreign_script("門อา", "th")
    assert not foreign_script("門", "ja")  # no script known for the language: no judgement
    assert normalise(" ขอบคุณ ครับ!! ") == "ขอบคุณครับ"


def test_thai_pieces_never_start_with_a_combining_mark() -> None:
    pieces = [
        SimpleNamespace(word=" ม", start=0.0, end=0.1, probability=0.9),
        SimpleNamespace(word="ั", start=0.1, end=0.2, probability=0.5),
        SimpleNamespace(word="น", start=0.2, end=0.3, probability=0.7),
        SimpleNamespace(word=" ี", start=0.3, end=0.4, probability=0.6),  # after a space: its own word
    ]
    decoded = segment("มัน")
    decoded.words = pieces
    words = guard([decoded], phantoms(), "th").words
    assert [(w.word, w.start, w.end, w.conf) for w in words] == [
        ("มั", 0.0, 0.2, 0.5),
        ("น", 0.2, 0.3, 0.7),
        ("ี", 0.3, 0.4, 0.6),
    ]


def test_engine_choices_from_the_environment() -> None:
    env = {"HOTLINE_ENGINE_TH": "Whisper", "HOTLINE_ENGINE_EN_US": "vosk", "HOTLINE_ENV": "dev"}
    assert engine_choices(env) == {"th": "whisper", "en-us": "vosk"}
    with pytest.raises(ConfigError, match="HOTLINE_ENGINE_TH"):
        engine_choices({"HOTLINE_ENGINE_TH": "google"})


def test_the_configuration_reads_the_whisper_settings(tmp_path: Path) -> None:
    env = {
        "HOTLINE_INSTANCE_DIR": str(tmp_path / "instance"),
        "HOTLINE_WHISPER_MODELS": "th=/srv/models/whisper-large",
        "HOTLINE_ENGINE_TH": "vosk",
        "HOTLINE_TRANSCRIBERS": "2",
    }
    config = Config.from_env(environ=env)
    assert (config.whisper_models_spec, dict(config.engine_choices)) == (
        "th=/srv/models/whisper-large",
        {"th": "vosk"},
    )
    assert config.whisper_threads == max(1, (os.cpu_count() or 1) // 2)  # the cores shared out
    assert Config.from_env(environ={**env, "HOTLINE_WHISPER_THREADS": "3"}).whisper_threads == 3
    # Both transcribers' Whisper jobs in one process (one copy of the weights), at most 4 to a process.
    assert config.whisper_jobs_per_process == 2
    assert Config.from_env(environ={**env, "HOTLINE_TRANSCRIBERS": "9"}).whisper_jobs_per_process == 4
    jobs = {**env, "HOTLINE_WHISPER_JOBS_PER_PROCESS": "1"}
    assert Config.from_env(environ=jobs).whisper_jobs_per_process == 1
    assert config.data_dir == (tmp_path / "instance" / "data").resolve() == data_dir_from_env(env)


def whisper_folder(path: Path) -> Path:
    path.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (path / name).write_text("{}")
    return path


def test_a_whisper_folder_by_path_and_the_choice_between_engines(tmp_path: Path) -> None:
    larger = whisper_folder(tmp_path / "whisper-large")
    korean = whisper_folder(tmp_path / "whisper-ko")
    catalogue = discover_engines({}, {"th": larger, "ko": korean}, data_dir=None, choices={})
    thai = catalogue.models["th"]
    assert (thai.engine, thai.source, thai.path, thai.sample_rate, thai.sha256) == (
        "whisper",
        "config",
        larger,
        16000,
        None,
    )
    # Korean has both engines: Vosk unless chosen otherwise; Thai has only Whisper unless Vosk is chosen.
    assert catalogue.models["ko"].engine == "vosk"
    chosen = discover_engines({}, {"ko": korean}, data_dir=None, choices={"ko": "whisper", "th": "vosk"})
    assert chosen.models["ko"].engine == "whisper" and "th" not in chosen.models
    assert "no vosk model" in chosen.refused["th"]
    (larger / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"whisper-large.*tokenizer\.json"):
        discover_engines({}, {"th": larger}, data_dir=None, choices={})


def test_choosing_vosk_for_thai_never_joins_the_shipped_model(tmp_path: Path) -> None:
    catalogue = discover_engines({}, {}, data_dir=tmp_path, choices={"th": "vosk"})
    assert "th" not in catalogue.models and not any(tmp_path.iterdir())
