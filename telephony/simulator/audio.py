"""The caller's recorded audio: a generated tone, and the length of a WAV."""

from __future__ import annotations

import array
import io
import math
import sys
import wave


def generate_wav(seconds: float, *, rate: int = 8000, frequency: float = 440.0, level: float = 0.05) -> bytes:
    """``seconds`` of a quiet sine tone as 16-bit mono PCM WAV (8 kHz by default, like a phone line)."""
    n = max(0, round(seconds * rate))
    amplitude = level * 32767
    step = 2 * math.pi * frequency / rate
    samples = array.array("h", (round(amplitude * math.sin(step * i)) for i in range(n)))
    if sys.byteorder != "little":
        samples.byteswap()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def wav_duration(wav_bytes: bytes) -> float | None:
    """Duration in seconds of a WAV file, or None if it is not one ``wave`` can read."""
    try:
        with wave.open(io.BytesIO(wav_bytes), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError):
        return None
