"""Twilio's recording media: fetched from TWILIO_API_BASE only, verified, stored privately, deleted.

The requests themselves are telephony's: transcription imports only infra, so it declares here what it
needs of Twilio's REST API (`RecordingMedia`), and app.py hands in telephony.rest.TwilioRest, the one
client that builds the credentials, timeouts, URL and redirect checks and maps errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from infra.files import disk_fault, make_private_dirs
from infra.sealed import RecordingCipher

CHUNK = 64 * 1024
# The plain bytes kept in memory to check the WAV header: its chunks before `data` (fmt, LIST, …).
_HEAD_BYTES = 1024 * 1024


class MediaRefused(ValueError):
    """The URL is not our account's recording at TWILIO_API_BASE (no SSRF): it is never fetched."""


class StorageFault(RuntimeError):
    """Our own disk failed while a recording was stored: an unwritable folder, a full disk, a read-only mount.

    `reason` names the folder and the error (infra.files.disk_fault). It says nothing about Twilio's copy:
    the download is tried again later, and the recording is never called unavailable for it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MediaFetchError(RuntimeError):
    """A download failed; `reason` is short and safe to store (no URLs, no credentials)."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class StoredMedia:
    """A stored recording: `sha256` and `size_bytes` are the audio's as downloaded; the file is sealed."""

    path: Path
    sha256: str
    size_bytes: int
    duration_s: float


@dataclass(frozen=True)
class WavInfo:
    channels: int
    sample_rate: int
    bits: int
    format_tag: int
    duration_s: float


@dataclass(frozen=True)
class MediaStream:
    """A recording's bytes as they arrive: `chunks` raises MediaFetchError if the transfer breaks off."""

    length: int | None  # what the server announced (Content-Length), if it did
    chunks: Iterator[bytes]


class RecordingMedia(Protocol):
    """What transcription needs of Twilio's REST API (implemented by telephony.rest.TwilioRest)."""

    def media_url(self, recording_url: str, recording_sid: str) -> str:
        """The .wav URL to fetch; MediaRefused unless it is our account's recording at our API base."""
        ...

    def open_media(self, url: str, chunk_size: int) -> AbstractContextManager[MediaStream]:
        """GET the media (redirects checked, credentials kept home); MediaFetchError unless it is a 200."""
        ...

    def delete_recording(self, recording_sid: str) -> None:
        """Delete the recording at Twilio (404 is gone too); MediaFetchError if it may still be there."""
        ...


class MediaClient:
    """Downloads of Twilio's recordings to our disk, over the REST client app.py hands in."""

    def __init__(
        self, twilio: RecordingMedia, sealer: RecordingCipher, *, max_bytes: int = 200 * 1024 * 1024
    ) -> None:
        self.twilio = twilio
        self.sealer = sealer
        self.max_bytes = max_bytes

    def fetch(self, recording_url: str, recording_sid: str, dest: Path) -> StoredMedia:
        """Download the WAV, seal it as it arrives into `dest` (mode 0600, written atomically), verify it.

        The plain audio is never written to disk: each chunk is sealed (infra.sealed) before it is written,
        and the WAV header is checked from the first bytes kept in memory. Raises MediaRefused (never
        requested), MediaFetchError (Twilio or the network) or StorageFault (our own disk). Whatever fails,
        no partial file is left behind.
        """
        url = self.twilio.media_url(recording_url, recording_sid)
        folder = dest.parent
        tmp = dest.with_name(dest.name + ".part")
        # Our own folder first: one that cannot be written fails here, before any request to Twilio.
        _prepare_folder(folder)
        with _our_disk("cannot write", folder):
            out = self.open_for_writing(tmp)
        try:
            digest, size, head = self._receive(url, out, folder)
            info = parse_wav_header(head, size)
            with _our_disk("cannot write", folder):
                out.close()  # the last buffered bytes: a full disk may only show here
                os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                out.close()
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        return StoredMedia(dest, digest, size, info.duration_s)

    def open_for_writing(self, path: Path) -> BinaryIO:
        """A new private (0600) file for the bytes of a download; tests subclass it to fail like a disk."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            return os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise

    def _receive(self, url: str, out: BinaryIO, folder: Path) -> tuple[str, int, bytes]:
        """GET the media, sealed, into `out`; returns its sha256, size and first bytes (the header)."""
        digest = hashlib.sha256()
        size = 0
        head = bytearray()
        with _our_disk("cannot write", folder):
            sealing = self.sealer.writer(out)
        with self.twilio.open_media(url, CHUNK) as media:
            for chunk in media.chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise MediaFetchError("too large", retryable=False)
                digest.update(chunk)
                if len(head) < _HEAD_BYTES:
                    head += chunk[: _HEAD_BYTES - len(head)]
                with _our_disk("cannot write", folder):
                    sealing.write(chunk)
        if media.length is not None and media.length != size:
            raise MediaFetchError(f"truncated: {size} of {media.length} bytes")
        with _our_disk("cannot write", folder):
            sealing.close()
        return digest.hexdigest(), size, bytes(head)

    def delete(self, recording_sid: str) -> None:
        """Delete the recording at Twilio (REST API; 404 is gone too); MediaFetchError if it may be there."""
        self.twilio.delete_recording(recording_sid)


def parse_wav_header(head: bytes, size: int) -> WavInfo:
    """Check a RIFF/WAVE file's chunks, from its first bytes and its whole size, and that the data chunk
    is all there; raise MediaFetchError."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise MediaFetchError("not a WAV file")
    fmt: tuple[int, int, int, int, int] | None = None
    pos = 12
    while True:
        chunk = head[pos : pos + 8]
        if len(chunk) < 8:
            raise MediaFetchError("truncated: no data chunk")
        cid, clen = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            body = head[pos + 8 : pos + 24]
            if len(body) < 16:
                raise MediaFetchError("truncated: short fmt chunk")
            tag, channels, rate, byte_rate, _align, bits = struct.unpack("<HHIIHH", body)
            fmt = (tag, channels, rate, byte_rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise MediaFetchError("not a WAV file: data before fmt")
            available = size - pos - 8
            # Twilio writes the real length; 0xFFFFFFFF would be a streaming header, also short.
            if clen > available:
                raise MediaFetchError(f"truncated: data chunk {clen} bytes, {available} present")
            tag, channels, rate, byte_rate, bits = fmt
            if channels < 1 or rate < 1 or byte_rate < 1:
                raise MediaFetchError("not a WAV file: bad fmt chunk")
            return WavInfo(channels, rate, bits, tag, clen / byte_rate)
        pos += 8 + clen + (clen & 1)


def _prepare_folder(folder: Path) -> None:
    """Create the recording's folder (0700); a StorageFault names the folder that could not be written in."""
    try:
        make_private_dirs(folder)
    except OSError as exc:
        # mkdir names the folder it could not make: the fault is in the one that should have held it.
        where = Path(exc.filename).parent if isinstance(exc.filename, str | os.PathLike) else folder
        raise StorageFault(disk_fault("cannot write", where, exc)) from None


@contextlib.contextmanager
def _our_disk(verb: str, folder: Path) -> Iterator[None]:
    """Turn an OSError of our own file system into a StorageFault (only around file calls: requests'
    errors are OSErrors too, and those are Twilio's or the network's)."""
    try:
        yield
    except OSError as exc:
        raise StorageFault(disk_fault(verb, folder, exc)) from None
