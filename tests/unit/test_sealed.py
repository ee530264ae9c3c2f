"""Sealed recordings (infra.sealed): not audio on disk, opened whole or by range, any change refused."""

from __future__ import annotations

import math
import zlib
from collections import Counter
from pathlib import Path

import pytest

from infra.crypto import DataKeyError, FieldCipher
from infra.sealed import (
    HEADER,
    TAG,
    RecordingCipher,
    RecordingKeyError,
    SealBroken,
    is_sealed,
    new_recording_key,
)
from telephony.simulator.audio import generate_wav

OLD, NEW = new_recording_key(), new_recording_key()


def entropy(data: bytes) -> float:
    counts = Counter(data)
    return -sum(c / len(data) * math.log2(c / len(data)) for c in counts.values())


def sealed_file(tmp_path: Path, plain: bytes, key: str = OLD, chunk: int = 1000) -> Path:
    path = tmp_path / "r.wav.sealed"
    path.write_bytes(RecordingCipher(key, chunk=chunk).seal_bytes(plain))
    return path


def test_a_sealed_recording_is_not_a_wav_and_opens_to_the_original(tmp_path: Path) -> None:
    wav = generate_wav(2.0)
    path = sealed_file(tmp_path, wav)
    stored = path.read_bytes()
    assert stored[:4] != b"RIFF" and b"WAVE" not in stored and b"data" not in stored[:200]
    assert entropy(stored) > 7.9  # bits per byte: indistinguishable from random
    assert len(zlib.compress(stored)) > 0.99 * len(stored)
    assert is_sealed(path)
    assert RecordingCipher(OLD).read_all(path) == wav


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 2000, 5432])
def test_every_range_opens_to_the_same_bytes(tmp_path: Path, size: int) -> None:
    plain = bytes(range(256)) * (size // 256 + 1)
    plain = plain[:size]
    path = sealed_file(tmp_path, plain)
    with RecordingCipher(OLD).open(path) as sealed:
        assert sealed.plain_size == size
        for start, length in [(0, size), (0, 10), (500, 700), (999, 2), (size - 3, 3), (size, 5)]:
            start = max(start, 0)
            assert b"".join(sealed.chunks(start, length)) == plain[start : start + length]


def test_a_changed_byte_anywhere_is_refused(tmp_path: Path) -> None:
    wav = generate_wav(1.0)
    path = sealed_file(tmp_path, wav)
    good = path.read_bytes()
    for where in (5, HEADER.size + 3, len(good) // 2, len(good) - 1):
        bad = bytearray(good)
        bad[where] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises((SealBroken, RecordingKeyError)):
            RecordingCipher(OLD).read_all(path)


def test_a_file_cut_at_a_chunk_boundary_or_with_chunks_swapped_is_refused(tmp_path: Path) -> None:
    path = sealed_file(tmp_path, bytes(5000))
    good = path.read_bytes()
    step = 1000 + TAG
    path.write_bytes(good[: HEADER.size + 2 * step])  # two whole chunks, the rest gone
    with pytest.raises(SealBroken):
        RecordingCipher(OLD).read_all(path)
    body = good[HEADER.size :]
    swapped = body[step : 2 * step] + body[:step] + body[2 * step :]
    path.write_bytes(good[: HEADER.size] + swapped)
    with pytest.raises(SealBroken):
        RecordingCipher(OLD).read_all(path)


def test_a_plain_file_is_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "plain.wav"
    path.write_bytes(generate_wav(1.0))
    assert not is_sealed(path)
    with pytest.raises(SealBroken, match="not a sealed recording"):
        RecordingCipher(OLD).read_all(path)


def test_the_first_key_seals_and_every_listed_key_opens(tmp_path: Path) -> None:
    path = sealed_file(tmp_path, b"old audio")
    both = RecordingCipher(f"{NEW},{OLD}")
    assert both.read_all(path) == b"old audio"
    with both.open(path) as sealed:
        assert sealed.header.key_id != both.current_id  # still under the old key
    with pytest.raises(RecordingKeyError, match="HOTLINE_RECORDING_KEY has no key that opens"):
        RecordingCipher(NEW).read_all(path)


@pytest.mark.parametrize(
    "value",
    ["", "c2hvcnQ=", "not base64 at all!", f"{NEW},short"],
    ids=["empty", "short", "not-base64", "good-then-short"],  # NEW is random: ids must not hold it
)
def test_a_malformed_recording_key_is_named_not_shown(value: str) -> None:
    with pytest.raises(RecordingKeyError, match=r"^HOTLINE_RECORDING_KEY") as refused:
        RecordingCipher(value)
    assert NEW not in str(refused.value)


def test_several_data_keys_rotate_numbers() -> None:
    from cryptography.fernet import Fernet

    k_old, k_new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = FieldCipher(k_old).encrypt("+66812345678")
    both = FieldCipher(f"{k_new},{k_old}")
    assert both.decrypt(token) == "+66812345678" and not both.is_current(token)
    rotated = both.rotate(token)
    assert both.is_current(rotated) and FieldCipher(k_new).decrypt(rotated) == "+66812345678"
    with pytest.raises(DataKeyError):
        FieldCipher(k_new).decrypt(token)
    with pytest.raises(DataKeyError, match=r"HOTLINE_DATA_KEY \(key 2\) is not a Fernet key"):
        FieldCipher(f"{k_new},nope")
