"""Decoding every format a call recording comes in, and refusing every kind of bad input with its reason."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from transcription.audio import AudioUnreadable, DecodedAudio, decode

TARGET = 16000
TONE_HZ = 440.0


def tone(rate: int, seconds: float, *, hz: float = TONE_HZ, level: float = 0.5) -> npt.NDArray[np.float32]:
    t = np.arange(int(rate * seconds)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def encode(signal: npt.NDArray[np.float32], rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, signal, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def samples(audio: DecodedAudio) -> npt.NDArray[np.float64]:
    return np.frombuffer(audio.pcm, dtype="<i2").astype(np.float64) / 32768.0


def dominant_hz(audio: DecodedAudio) -> float:
    signal = samples(audio)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / audio.sample_rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
@pytest.mark.parametrize("subtype", ["PCM_16", "ULAW", "ALAW"])
def test_wav_mono_is_resampled_to_the_target_rate(rate: int, subtype: str) -> None:
    audio = decode(encode(tone(rate, 2.0), rate, "WAV", subtype), target_rate=TARGET, max_seconds=60)

    assert audio.sample_rate == TARGET
    assert audio.source_rate == rate
    assert audio.channels == 1
    assert audio.source_format == f"WAV/{subtype}"
    assert audio.duration_s == pytest.approx(2.0, rel=0.05)
    assert len(audio.pcm) / 2 / TARGET == pytest.approx(2.0, rel=0.05)
    assert audio.upsampled_from == (rate if rate < TARGET else None)
    # The pitch survives resampling: the samples were converted, not reinterpreted.
    assert dominant_hz(audio) == pytest.approx(TONE_HZ, abs=2.0)
    assert np.max(np.abs(samples(audio))) == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_stereo_is_downmixed_by_averaging(rate: int) -> None:
    left = tone(rate, 1.5)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)

    audio = decode(encode(stereo, rate, "WAV", "PCM_16"), target_rate=TARGET, max_seconds=60)

    assert audio.channels == 2
    assert audio.duration_s == pytest.approx(1.5, rel=0.05)
    assert np.max(np.abs(samples(audio))) == pytest.approx(0.25, rel=0.05)  # (0.5 + 0) / 2
    assert dominant_hz(audio) == pytest.approx(TONE_HZ, abs=2.0)


def test_opposite_channels_cancel() -> None:
    left = tone(8000, 1.0)
    audio = decode(encode(np.stack([left, -left], axis=1), 8000, "WAV"), target_rate=TARGET, max_seconds=60)
    assert np.max(np.abs(samples(audio))) < 1e-3


def test_pcm_at_the_target_rate_passes_through_unchanged() -> None:
    original = (tone(TARGET, 1.0) * 32767).astype("<i2")
    audio = decode(
        encode(original.astype(np.float32) / 32768, TARGET, "WAV"), target_rate=TARGET, max_seconds=9
    )
    assert audio.pcm == original.tobytes()


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_mp3(rate: int) -> None:
    audio = decode(encode(tone(rate, 3.0), rate, "MP3"), target_rate=TARGET, max_seconds=60)

    assert audio.source_format == "MP3/MPEG_LAYER_III"
    assert audio.source_rate == rate
    assert audio.duration_s == pytest.approx(3.0, rel=0.05)
    assert audio.upsampled_from == (rate if rate < TARGET else None)
    assert dominant_hz(audio) == pytest.approx(TONE_HZ, abs=3.0)


def test_a_path_is_read_like_bytes(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    path.write_bytes(encode(tone(8000, 1.0), 8000, "WAV", "ULAW"))
    assert decode(path, target_rate=TARGET, max_seconds=9) == decode(
        path.read_bytes(), target_rate=TARGET, max_seconds=9
    )


def test_a_lower_target_rate_downsamples() -> None:
    audio = decode(encode(tone(44100, 1.0), 44100, "WAV"), target_rate=8000, max_seconds=9)
    assert (audio.sample_rate, audio.upsampled_from, len(audio.pcm)) == (8000, None, 16000)


# -- bad input ------------------------------------------------------------------------------------------


def reason_for(source: bytes | Path, *, max_seconds: float = 60) -> str:
    with pytest.raises(AudioUnreadable) as caught:
        decode(source, target_rate=TARGET, max_seconds=max_seconds)
    assert caught.value.message
    return caught.value.reason


def wav_with_data_size(declared: int, payload: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", declared)
        + payload
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_empty_bytes_and_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert reason_for(b"") == "empty"
    assert reason_for(empty) == "empty"


@pytest.mark.parametrize(
    "content",
    [
        b"<html><body>Recording not found</body></html>" * 20,
        b'{"code": 20404, "message": "The requested resource was not found"}',
        b"%PDF-1.4\n" + bytes(range(256)) * 10,
        np.random.default_rng(7).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
    ],
    ids=["html", "json", "pdf", "random"],
)
def test_not_audio(content: bytes) -> None:
    assert reason_for(content) == "not_audio"


def test_a_damaged_wav_header_is_corrupt() -> None:
    assert reason_for(b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunkjunkjunkjunk") == "corrupt"


def test_truncated_wav_is_refused_although_libsndfile_would_read_it_short() -> None:
    whole = encode(tone(8000, 2.0), 8000, "WAV")
    cut = whole[: len(whole) // 2]
    # libsndfile quietly reports the shorter length: only our header check notices.
    assert soundfile.info(io.BytesIO(cut)).frames < 16000
    assert reason_for(cut) == "truncated"


def test_a_wav_cut_inside_a_frame_is_truncated() -> None:
    payload = (tone(8000, 0.5) * 32767).astype("<i2").tobytes()
    assert reason_for(wav_with_data_size(len(payload) + 1, payload + b"\x00")) == "truncated"


def test_truncated_mp3() -> None:
    whole = encode(tone(16000, 6.0), 16000, "MP3")
    assert reason_for(whole[: len(whole) // 2]) == "truncated"


def test_a_header_without_frames() -> None:
    assert reason_for(wav_with_data_size(0, b"")) == "no_frames"


def test_too_long_is_refused_from_the_header() -> None:
    assert reason_for(encode(tone(8000, 3.0), 8000, "WAV"), max_seconds=2.0) == "too_long"


def test_too_long_is_refused_when_the_length_is_unknown() -> None:
    # A streamed WAV whose writer never filled in the sizes: the length shows only while decoding.
    payload = (tone(8000, 3.0) * 32767).astype("<i2").tobytes()
    assert reason_for(wav_with_data_size(0xFFFFFFFF, payload), max_seconds=2.0) == "too_long"
    audio = decode(wav_with_data_size(0xFFFFFFFF, payload), target_rate=TARGET, max_seconds=9)
    assert audio.duration_s == pytest.approx(3.0, rel=0.05)


def test_a_missing_file_is_an_os_error_not_bad_audio(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        decode(tmp_path / "nothing.wav", target_rate=TARGET, max_seconds=9)
