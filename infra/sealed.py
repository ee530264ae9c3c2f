"""Recordings sealed at rest: AES-256-GCM in chunks, so a range can be read without the whole file.

File layout (every integer big-endian):

    magic "HLSEAL1\\0" (8) | key id (8) | chunk size (4) | nonce prefix (8) | chunks …

Each chunk holds `chunk size` plain bytes (the last one fewer, possibly none) encrypted with AES-GCM
under the nonce prefix + the chunk's index (4 bytes), followed by its 16-byte tag. The header, the
chunk's index and a last-chunk flag are the associated data: a chunk moved, dropped, or a file cut at
a chunk boundary fails authentication, as does any changed byte. The key id (a hash of the key, never
the key) tells which configured key sealed the file, so rotation knows what it still has to do and a
missing key is named before anything is read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"HLSEAL1\x00"
HEADER = struct.Struct(">8s8sI8s")
TAG = 16
CHUNK = 64 * 1024
_MAX_CHUNK = 16 * 1024 * 1024


class RecordingKeyError(ValueError):
    """A recording key is missing or malformed, or a sealed file cannot be opened with the keys we have."""


class SealBroken(ValueError):
    """A sealed file is not what we sealed: changed, cut short, or not sealed at all."""


def key_id(key: bytes) -> bytes:
    """Eight bytes naming a key in a file's header (not secret: a one-way hash of the key)."""
    return hashlib.sha256(b"hotline recording key id:" + key).digest()[:8]


def new_recording_key() -> str:
    """A fresh key in the form the settings take: 32 random bytes, url-safe base64 (as a Fernet key)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def parse_keys(value: str, variable: str) -> list[bytes]:
    """`key` or `newest,older,…` as 32-byte keys; a RecordingKeyError names `variable` (never the value)."""
    keys = []
    for position, text in enumerate((part.strip() for part in value.split(",")), start=1):
        try:
            raw = base64.urlsafe_b64decode(text.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raw = b""
        if len(raw) != 32:
            where = f"{variable} (key {position})" if "," in value else variable
            raise RecordingKeyError(f"{where} is not a key of 32 url-safe base64 bytes")
        keys.append(raw)
    if not keys or not value.strip():
        raise RecordingKeyError(f"{variable} is empty: recordings cannot be stored")
    return keys


@dataclass(frozen=True)
class Header:
    key_id: bytes
    chunk: int
    prefix: bytes

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, self.key_id, self.chunk, self.prefix)


def read_header(head: bytes) -> Header | None:
    """The header of a sealed file, None for a file that is not sealed (a plain recording)."""
    if len(head) < HEADER.size or not head.startswith(MAGIC):
        return None
    _magic, kid, chunk, prefix = HEADER.unpack(head[: HEADER.size])
    if not 0 < chunk <= _MAX_CHUNK:
        raise SealBroken("the sealed file's header is damaged")
    return Header(kid, chunk, prefix)


def is_sealed(path: Path) -> bool:
    with path.open("rb") as fh:
        return read_header(fh.read(HEADER.size)) is not None


class RecordingCipher:
    """Seals and opens recordings with HOTLINE_RECORDING_KEY: the first key seals, every key opens."""

    def __init__(self, value: str, variable: str = "HOTLINE_RECORDING_KEY", *, chunk: int = CHUNK) -> None:
        keys = parse_keys(value, variable)
        self.variable = variable
        self.chunk = chunk
        self.current_id = key_id(keys[0])
        self._current = AESGCM(keys[0])
        self._by_id = {key_id(k): AESGCM(k) for k in keys}

    def knows(self, kid: bytes) -> bool:
        return kid in self._by_id

    @property
    def key_ids(self) -> list[str]:
        """The configured keys' ids (hex, as a sealed file's header and a backup's manifest name them),
        the sealing one first."""
        return [kid.hex() for kid in self._by_id]

    # ---- sealing ------------------------------------------------------------------------------------

    def writer(self, out: BinaryIO) -> SealWriter:
        """A writer that seals what is written to it into `out` with the current key."""
        return SealWriter(self._current, Header(self.current_id, self.chunk, os.urandom(8)), out)

    def seal_bytes(self, plain: bytes) -> bytes:
        import io

        buffer = io.BytesIO()
        with self.writer(buffer) as writer:
            writer.write(plain)
        return buffer.getvalue()

    # ---- opening ------------------------------------------------------------------------------------

    def open(self, path: Path) -> SealedFile:
        """A sealed file for reading; SealBroken if it is not one, RecordingKeyError if no key opens it."""
        fh = path.open("rb")
        try:
            header = read_header(fh.read(HEADER.size))
            if header is None:
                raise SealBroken("not a sealed recording")
            aead = self._by_id.get(header.key_id)
            if aead is None:
                raise RecordingKeyError(
                    f"{self.variable} has no key that opens the recordings sealed with key id "
                    f"{header.key_id.hex()}"
                )
            size = os.fstat(fh.fileno()).st_size
            return SealedFile(fh, aead, header, size)
        except BaseException:
            fh.close()
            raise

    def read_all(self, path: Path) -> bytes:
        with self.open(path) as sealed:
            return b"".join(sealed.chunks(0, sealed.plain_size))


class SealWriter:
    """Buffers plain bytes into chunks and writes each sealed; close() writes the last (flagged) chunk."""

    def __init__(self, aead: AESGCM, header: Header, out: BinaryIO) -> None:
        self._aead, self._header, self._out = aead, header, out
        self._packed = header.pack()
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        out.write(self._packed)

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) > self._header.chunk:
            # Strictly more than a chunk: the last chunk must stay buffered for close() to flag it.
            self._emit(bytes(self._buffer[: self._header.chunk]), last=False)
            del self._buffer[: self._header.chunk]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()

    def _emit(self, plain: bytes, *, last: bool) -> None:
        nonce = _nonce(self._header, self._index)
        self._out.write(self._aead.encrypt(nonce, plain, _aad(self._packed, self._index, last)))
        self._index += 1

    def __enter__(self) -> SealWriter:
        return self

    def __exit__(self, kind: object, *_rest: object) -> None:
        if kind is None:
            self.close()


class SealedFile:
    """An open sealed recording: its plain size (from the file's length), and any plain range by chunks."""

    def __init__(self, fh: BinaryIO, aead: AESGCM, header: Header, size: int) -> None:
        self._fh, self._aead, self.header = fh, aead, header
        self._packed = header.pack()
        body = size - HEADER.size
        step = header.chunk + TAG
        self.chunk_count = max(1, -(-body // step))
        last = body - (self.chunk_count - 1) * step - TAG
        if body < TAG or last < 0:
            raise SealBroken("the sealed file is cut short")
        self.plain_size = (self.chunk_count - 1) * header.chunk + last

    def read_chunk(self, index: int) -> bytes:
        """Chunk `index`, opened and authenticated; SealBroken if any byte of it (or its place) is wrong."""
        step = self.header.chunk + TAG
        self._fh.seek(HEADER.size + index * step)
        sealed = self._fh.read(step)
        last = index == self.chunk_count - 1
        try:
            return self._aead.decrypt(_nonce(self.header, index), sealed, _aad(self._packed, index, last))
        except InvalidTag:
            raise SealBroken("the sealed recording fails authentication (changed or damaged)") from None

    def chunks(self, start: int, length: int) -> Iterator[bytes]:
        """The plain bytes [start, start + length), as they are opened (only the chunks they fall in)."""
        end = min(start + length, self.plain_size)
        if self.plain_size == 0:
            self.read_chunk(0)  # an empty recording is still authenticated
            return
        first, step = start // self.header.chunk, self.header.chunk
        for index in range(first, -(-end // step) if end > 0 else 0):
            plain = self.read_chunk(index)
            base = index * step
            yield plain[max(start - base, 0) : end - base]

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> SealedFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _nonce(header: Header, index: int) -> bytes:
    return header.prefix + struct.pack(">I", index)


def _aad(packed: bytes, index: int, last: bool) -> bytes:
    return packed + struct.pack(">QB", index, 1 if last else 0)
