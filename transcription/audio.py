"""Decoding recorded calls into the 16-bit mono PCM a recognizer takes, and the reasons audio is refused."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Literal

import numpy as np
import numpy.typing as npt
import soundfile  # type: ignore[import-untyped]  # ships no type information
import soxr  # type: ignore[import-untyped]  # ships no py.typed marker

UnreadableReason = Literal[
    "empty", "not_audio", "corrupt", "truncated", "too_long", "no_frames", "unsupported"
]

# soxr "HQ" is libsoxr's and sox's default: 20-bit precision and a 95 % passband, already finer than the
# 16-bit PCM we hand to Kaldi. "VHQ" (28-bit) would only add precision that the int16 output throws away.
RESAMPLE_QUALITY: Final = "HQ"

# Frames decoded per read: bounds memory while a too-long or unknown-length stream is being measured.
_BLOCK_FRAMES: Final = 65536
_MIN_RATE: Final = 4000
_MAX_RATE: Final = 192000
# libsndfile's "length unknown" answer (SF_COUNT_MAX), e.g. for some streamed or damaged files.
_UNKNOWN_FRAMES: Final = 0x7FFFFFFFFFFFFFFF
# WAV writers that stream (and never patch the header) leave these data sizes: not a truncation.
_WAV_UNKNOWN_SIZES: Final = (0, 0xFFFFFFFF)
# An MP3's frame count without a Xing/Info header is estimated from the file size; allow the estimate to be
# off by two MPEG frames or 1 %, whichever is larger, before calling the file truncated.
_MP3_FRAME: Final = 1152

# Containers libsndfile knows by their first bytes: a file that starts like one but does not open is damaged,
# anything else is not audio at all.
_AUDIO_MAGIC: Final = (b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS", b".snd", b"ID3", b"\xff\xfb")


class AudioUnreadable(Exception):
    """The input cannot be turned into speech audio; `reason` is a short machine code."""

    def __init__(self, reason: UnreadableReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: UnreadableReason = reason
        self.message = message


@dataclass(frozen=True)
class DecodedAudio:
    pcm: bytes  # int16 little-endian mono at sample_rate
    sample_rate: int
    source_rate: int
    channels: int
    source_format: str  # libsndfile's "FORMAT/SUBTYPE", e.g. "WAV/ULAW", "MP3/MPEG_LAYER_III"
    duration_s: float
    upsampled_from: int | None


def decode(source: bytes | Path, *, target_rate: int, max_seconds: float) -> DecodedAudio:
    """Decode WAV (PCM, μ-law, A-law), MP3 or any libsndfile format to mono int16 PCM at `target_rate`.

    Raises AudioUnreadable for empty, not-audio, corrupt, truncated, too long or frameless input, and OSError
    when a path cannot be read.
    """
    with _open_source(source) as stream:
        head = stream.read(16)
        if not head:
            raise AudioUnreadable("empty", "the recording has no bytes")
        stream.seek(0)
        _check_riff_sizes(stream)
        stream.seek(0)
        try:
            sound = soundfile.SoundFile(stream)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            if head.startswith(_AUDIO_MAGIC):
                raise AudioUnreadable("corrupt", f"the audio container is damaged: {_why(exc)}") from exc
            raise AudioUnreadable("not_audio", "the bytes are not a known audio format") from exc
        with sound:
            return _decode_open(sound, target_rate=target_rate, max_seconds=max_seconds)


@contextmanager
def _open_source(source: bytes | Path) -> Iterator[BinaryIO]:
    if isinstance(source, Path):
        with source.open("rb") as handle:
            yield handle
    else:
        yield io.BytesIO(source)


def _decode_open(sound: soundfile.SoundFile, *, target_rate: int, max_seconds: float) -> DecodedAudio:
    rate, channels, declared = int(sound.samplerate), int(sound.channels), int(sound.frames)
    source_format = f"{sound.format}/{sound.subtype}"
    if not _MIN_RATE <= rate <= _MAX_RATE or channels < 1:
        raise AudioUnreadable("unsupported", f"{rate} Hz with {channels} channel(s) is not telephone audio")
    limit = int(max_seconds * rate)
    if declared == 0:
        raise AudioUnreadable("no_frames", f"the {source_format} header announces no audio frames")
    if declared != _UNKNOWN_FRAMES and declared > limit:
        raise AudioUnreadable("too_long", f"{declared / rate:.1f} s is over the {max_seconds:g} s limit")

    blocks: list[npt.NDArray[np.float32]] = []
    total = 0
    try:
        while True:
            block = sound.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if not len(block):
                break
            # Downmix as we go so a long stereo file never holds both channels at once.
            blocks.append(block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0].copy())
            total += len(block)
            if total > limit:
                raise AudioUnreadable("too_long", f"the audio runs past the {max_seconds:g} s limit")
            if len(block) < _BLOCK_FRAMES:
                break
    except soundfile.LibsndfileError as exc:
        raise AudioUnreadable("corrupt", f"decoding failed after {total} frames: {_why(exc)}") from exc
    if total == 0:
        raise AudioUnreadable("no_frames", f"no audio frames could be decoded from the {source_format} data")
    if declared != _UNKNOWN_FRAMES and total < declared - _shortfall_allowed(sound.format, declared):
        raise AudioUnreadable("truncated", f"the header promises {declared} frames, only {total} are present")

    mono = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate, quality=RESAMPLE_QUALITY)
    pcm = np.clip(np.rint(mono * 32768.0), -32768, 32767).astype("<i2").tobytes()
    return DecodedAudio(
        pcm=pcm,
        sample_rate=target_rate,
        source_rate=rate,
        channels=channels,
        source_format=source_format,
        duration_s=total / rate,
        upsampled_from=rate if rate < target_rate else None,
    )


def _why(exc: Exception) -> str:
    # LibsndfileError's str() names the Python file object; error_string is libsndfile's own sentence.
    return str(getattr(exc, "error_string", exc))


def _shortfall_allowed(container: str, declared: int) -> int:
    if container == "MP3":
        return max(2 * _MP3_FRAME, declared // 100)
    return 0


def _check_riff_sizes(stream: BinaryIO) -> None:
    """Refuse a WAV whose data chunk claims more bytes than the file holds.

    libsndfile notices this but only logs it, then silently returns the frames that are there; a recording
    cut off in transfer would pass as a shorter, complete one.
    """
    header = stream.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    position = 12
    block_align = 0
    while position + 8 <= size:
        stream.seek(position)
        chunk_id, chunk_size = struct.unpack("<4sI", stream.read(8))
        body = position + 8
        if chunk_id == b"fmt " and chunk_size >= 14:
            block_align = struct.unpack("<H", stream.read(14)[12:14])[0]
        if chunk_id == b"data":
            if chunk_size in _WAV_UNKNOWN_SIZES:
                return
            present = size - body
            if present < chunk_size:
                raise AudioUnreadable(
                    "truncated", f"the WAV data chunk promises {chunk_size} bytes, only {present} are present"
                )
            if block_align and chunk_size % block_align:
                raise AudioUnreadable(
                    "truncated",
                    f"the WAV data ends inside a frame ({chunk_size} bytes, {block_align} a frame)",
                )
            return
        position = body + chunk_size + (chunk_size & 1)
