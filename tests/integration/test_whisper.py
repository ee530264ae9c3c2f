"""The Whisper engine on real Thai speech (16 kHz and 8 kHz μ-law), its guards, the pinned model and the pool.

One model is loaded per xdist worker (a session fixture): each transcription costs seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from transcription.audio import decode
from transcription.engine import EngineSpec, Recognition, load_engine
from transcription.pool import TranscriberPool
from transcription.registry import ModelError, ModelInfo, discover_models, verify_pinned
from transcription.whisper_engine import WhisperEngine
from transcription.whisper_models import (
    WHISPER_BASE_DIR,
    WHISPER_BASE_SHA256,
    WHISPER_BASE_SIZE,
    discover_engines,
    shipped_whisper_base,
)

ROOT = Path(__file__).resolve().parents[2]
CLIPS = ROOT / "tests" / "data" / "thai"
# Words clearly spoken in each clip (tests/data/README.md), that Whisper base gets at both rates.
SPOKEN = {
    "common_voice_th_25686161.wav": ("เรื่อง", "เวลา"),
    "typhoon_cv_test.wav": ("เธอ", "อีกอัน"),
}


def thai_share(text: str) -> float:
    letters = [c for c in text if unicodedata.category(c)[0] in "LM"]
    return sum("\u0e00" <= c <= "\u0e7f" for c in letters) / len(letters) if letters else 0.0


def telephone(source: Path, target: Path) -> Path:
    """What Twilio records: 300-3400 Hz, 8 kHz, μ-law WAV (sox IN -r 8000 -e mu-law OUT sinc 300-3400)."""
    audio, rate = sf.read(source, dtype="float64")
    spectrum = np.fft.rfft(audio)
    frequencies = np.fft.rfftfreq(len(audio), 1 / rate)
    spectrum[(frequencies < 300) | (frequencies > 3400)] = 0
    narrow = soxr.resample(np.fft.irfft(spectrum, len(audio)), rate, 8000)
    sf.write(target, np.clip(narrow, -1, 1), 8000, subtype="ULAW")
    return target


@pytest.fixture(scope="session")
def whisper_base(whisper_data_dir: Path) -> ModelInfo:
    info = shipped_whisper_base(whisper_data_dir, "th")
    assert info is not None, "the Whisper base wheels are a default dependency"
    return info


@pytest.fixture(scope="session")
def engine(whisper_base: ModelInfo) -> WhisperEngine:
    return WhisperEngine(whisper_base.path, "th", cpu_threads=2)


def transcribe_file(engine: WhisperEngine, path: Path) -> Recognition:
    # The worker's decoder: μ-law and 8 kHz in, 16-bit PCM at the engine's rate out (soxr).
    audio = decode(path, target_rate=engine.sample_rate, max_seconds=60)
    return engine.transcribe(audio.pcm)


@pytest.mark.parametrize("clip", sorted(SPOKEN))
def test_thai_speech_becomes_thai_text_at_16_and_8_khz(
    engine: WhisperEngine, clip: str, tmp_path: Path
) -> None:
    for path in (CLIPS / clip, telephone(CLIPS / clip, tmp_path / "phone.wav")):
        assert sf.info(path).samplerate in (16000, 8000)
        result = transcribe_file(engine, path)
        assert result.rejected is None
        assert thai_share(result.text) > 0.9, result.text
        for word in SPOKEN[clip]:
            assert word in result.text.replace(" ", ""), (path.name, result.text)
        duration = sf.info(path).duration
        assert result.words and result.segments
        assert all(0 <= w.start <= w.end <= duration + 0.1 and 0 <= w.conf <= 1 for w in result.words)
        # Pieces are joined so that no word starts with a lone vowel or tone mark.
        assert not any(unicodedata.category(w.word[0]) == "Mn" for w in result.words)
        assert result.mean_confidence is not None and 0.3 < result.mean_confidence <= 1


def test_a_message_with_a_long_pause_keeps_both_parts_at_their_times(
    engine: WhisperEngine, tmp_path: Path
) -> None:
    first, rate = sf.read(CLIPS / "common_voice_th_25686161.wav", dtype="float32")
    second, _ = sf.read(CLIPS / "typhoon_cv_test.wav", dtype="float32")
    pause_s = 25.0  # the caller stops to think; voice activity detection cuts it out for Whisper
    path = tmp_path / "pause.wav"
    sf.write(path, np.concatenate([first, np.zeros(int(pause_s * rate), "float32"), second]), rate)
    result = transcribe_file(engine, path)
    text = result.text.replace(" ", "")
    # "เวลา" (time) is said in both sentences: the first one's comes first, the second's is "เวลานาน".
    assert "เวลา" in text and "เวลานาน" in text and text.index("เวลา") < text.index("เวลานาน")
    # Times are the recording's, pause included: the second sentence starts after it.
    later = [w for w in result.words if w.start > len(first) / rate + pause_s - 1]
    assert later and "เวลานาน" in "".join(w.word for w in later)
    assert all(
        w.end <= len(first) / rate + 1 or w.start >= len(first) / rate + pause_s - 1 for w in result.words
    )


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    seconds = np.arange(8000 * 6) / 8000
    return {
        "silence": np.zeros(8000 * 6),
        "white noise": rng.normal(0, 0.1, 8000 * 6),
        "440 Hz tone": 0.3 * np.sin(2 * np.pi * 440 * seconds),
    }


@pytest.mark.parametrize("name", sorted(_signals()))
def test_silence_noise_and_tones_end_with_no_text(engine: WhisperEngine, name: str, tmp_path: Path) -> None:
    path = tmp_path / "signal.wav"
    sf.write(path, _signals()[name], 8000, subtype="ULAW")  # as a phone line would carry it
    result = transcribe_file(engine, path)
    assert (result.text, result.words, result.segments) == ("", [], [])
    assert result.rejected


def test_a_tampered_model_is_refused_by_name(whisper_base: ModelInfo, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(whisper_base.path, data_dir / WHISPER_BASE_DIR)
    model_bin = data_dir / WHISPER_BASE_DIR / "model.bin"
    with model_bin.open("r+b") as stream:  # one byte changed, the size unchanged
        stream.seek(WHISPER_BASE_SIZE // 2)
        byte = stream.read(1)
        stream.seek(WHISPER_BASE_SIZE // 2)
        stream.write(bytes([byte[0] ^ 0xFF]))

    with pytest.raises(ModelError, match="sha256") as refused:
        verify_pinned(model_bin.parent, WHISPER_BASE_SHA256, WHISPER_BASE_SIZE)
    assert str(model_bin) in str(refused.value)
    # The worker's registry leaves Thai out (its messages end no_model) and says why, naming the file.
    catalogue = discover_engines({}, {}, data_dir=data_dir, choices={})
    assert "th" not in catalogue.models and str(model_bin) in catalogue.refused["th"]
    # And a child that was given the model before it changed refuses it at load: the job ends no_model.
    with TranscriberPool(
        {"th": replace(whisper_base, path=model_bin.parent)},
        size=1,
        job_timeout_s=60,
        max_audio_s=60,
        max_jobs_per_process=10,
    ) as pool:
        outcome = pool.transcribe(CLIPS / "typhoon_cv_test.wav", "th")
    assert (outcome.status, outcome.reason, outcome.text) == ("no_model", "no_model", "")
    assert outcome.detail is not None and str(model_bin) in outcome.detail

    model_bin.write_bytes(b"\0" * 10)  # a truncated file: refused on its size, before hashing
    with pytest.raises(ModelError, match="not the pinned 145,217,607"):
        load_engine(
            EngineSpec("th", "whisper", str(model_bin.parent), 16000, WHISPER_BASE_SHA256, WHISPER_BASE_SIZE)
        )


_OFFLINE_CHILD = """
import json, os, socket, sys
def refuse(*args, **kwargs):
    raise AssertionError(f"network use while loading or transcribing: {args!r}")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from pathlib import Path
from transcription.engine import EngineSpec, load_engine
from transcription.audio import decode
engine = load_engine(EngineSpec("th", "whisper", sys.argv[1], 16000, sys.argv[2], int(sys.argv[3])))
pcm = decode(Path(sys.argv[4]), target_rate=16000, max_seconds=60).pcm
print(json.dumps({"text": engine.transcribe(pcm).text, "offline": os.environ.get("HF_HUB_OFFLINE")}))
"""


def test_loading_and_transcribing_open_no_connection(whisper_base: ModelInfo) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _OFFLINE_CHILD,
            str(whisper_base.path),
            WHISPER_BASE_SHA256,
            str(WHISPER_BASE_SIZE),
            str(CLIPS / "common_voice_th_25686161.wav"),
        ],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["offline"] == "1"  # set by the engine module itself, before faster_whisper is imported
    assert "เวลา" in result["text"]


@pytest.fixture
def mixed_pool(whisper_base: ModelInfo) -> Iterator[TranscriberPool]:
    models = {**discover_models({}), "th": whisper_base}  # Korean through Vosk, Thai through Whisper
    with TranscriberPool(
        models, size=1, job_timeout_s=120, max_audio_s=60, max_jobs_per_process=10, cpu_threads=2
    ) as pool:
        yield pool


def test_the_pool_serves_thai_through_whisper_beside_korean_through_vosk(
    mixed_pool: TranscriberPool, tmp_path: Path
) -> None:
    phone = telephone(CLIPS / "typhoon_cv_test.wav", tmp_path / "phone.wav")
    thai = mixed_pool.transcribe(phone, "th")
    assert thai.status == "done" and thai.reason is None, thai
    assert thai.engine.startswith("faster-whisper 1.2") and thai.model_id == "whisper-base-1.0.0"
    assert thai_share(thai.text) > 0.9 and "อีกอัน" in thai.text.replace(" ", "")
    assert thai.upsampled_from == 8000 and thai.words and thai.mean_confidence is not None
    assert all(0 <= w.conf <= 1 for w in thai.words)

    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(8000 * 4), 8000, subtype="ULAW")
    quiet = mixed_pool.transcribe(silence, "th")
    assert (quiet.status, quiet.reason, quiet.text, quiet.words) == ("no_speech", "no_speech", "", [])

    korean = mixed_pool.transcribe(silence, "ko")  # the same child runs the Vosk model
    assert korean.engine.startswith("vosk ") and korean.status == "no_speech"
    assert len(mixed_pool.pids()) == 1
