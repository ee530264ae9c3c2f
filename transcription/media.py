"""Twilio's recording media: fetched from TWILIO_API_BASE only, verified, stored privately, deleted."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import requests

from infra.files import disk_fault, make_private_dirs

API_VERSION = "2010-04-01"
RECORDING_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Recordings/(RE[0-9a-fA-F]{32})$")
CHUNK = 64 * 1024
MAX_REDIRECTS = 3


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


class MediaClient:
    """Twilio's media and recording REST endpoints, behind HTTP basic auth (account SID, auth token)."""

    def __init__(
        self,
        api_base: str,
        account_sid: str,
        auth_token: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        max_bytes: int = 200 * 1024 * 1024,
        session: requests.Session | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.account_sid = account_sid
        self._auth = (account_sid, auth_token)
        self._timeout = (connect_timeout_s, read_timeout_s)
        self.max_bytes = max_bytes
        self._session = session or requests.Session()

    def media_url(self, recording_url: str, recording_sid: str) -> str:
        """The .wav URL to fetch, after checking the URL is our account's recording at our API base."""
        base, url = urlsplit(self.api_base), urlsplit(recording_url)
        if (url.scheme, url.hostname, url.port) != (base.scheme, base.hostname, base.port):
            raise MediaRefused("recording URL is not at TWILIO_API_BASE")
        path = url.path.removesuffix(".wav").removesuffix(".mp3")
        found = RECORDING_PATH.match(path)
        if found is None or url.query or url.fragment:
            raise MediaRefused("recording URL is not a Twilio recording path")
        if found.group(1) != self.account_sid or found.group(2) != recording_sid:
            raise MediaRefused("recording URL names another account or recording")
        return f"{self.api_base}{path}.wav"

    def fetch(self, recording_url: str, recording_sid: str, dest: Path) -> StoredMedia:
        """Download the WAV to `dest` (mode 0600, written atomically) and verify it.

        Raises MediaRefused (never requested), MediaFetchError (Twilio or the network) or StorageFault (our
        own disk). Whatever fails, no partial file is left behind.
        """
        url = self.media_url(recording_url, recording_sid)
        folder = dest.parent
        tmp = dest.with_name(dest.name + ".part")
        # Our own folder first: one that cannot be written fails here, before any request to Twilio.
        _prepare_folder(folder)
        with _our_disk("cannot write", folder):
            out = self.open_for_writing(tmp)
        try:
            digest, size = self._receive(url, out, folder)
            with _our_disk("cannot write", folder):
                out.close()  # the last buffered bytes: a full disk may only show here
            with _our_disk("cannot read", folder):
                info = read_wav_header(tmp)
            with _our_disk("cannot write", folder):
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

    def _receive(self, url: str, out: BinaryIO, folder: Path) -> tuple[str, int]:
        """GET the media into `out`; returns its sha256 and size."""
        response = self._get_following_redirects(url)
        with response:
            if response.status_code in (401, 403):
                raise MediaFetchError(f"http {response.status_code}: credentials refused")
            if response.status_code == 404:
                raise MediaFetchError("http 404: media not (yet) there")
            if response.status_code != 200:
                raise MediaFetchError(f"http {response.status_code}")
            expected = response.headers.get("Content-Length")
            digest = hashlib.sha256()
            size = 0
            try:
                for chunk in response.iter_content(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise MediaFetchError("too large", retryable=False)
                    digest.update(chunk)
                    with _our_disk("cannot write", folder):
                        out.write(chunk)
            except requests.RequestException as exc:
                raise MediaFetchError(f"interrupted: {type(exc).__name__}") from None
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise MediaFetchError(f"truncated: {size} of {expected} bytes")
        return digest.hexdigest(), size

    def _get_following_redirects(self, url: str) -> requests.Response:
        """GET with credentials for our API base only; Twilio may redirect media to a presigned https URL.

        Redirects are followed by hand: at most MAX_REDIRECTS, only to https (or back to the API base's
        own origin), and the credentials are never sent to another host.
        """
        base = urlsplit(self.api_base)
        for _ in range(MAX_REDIRECTS + 1):
            target = urlsplit(url)
            ours = (target.scheme, target.hostname, target.port) == (base.scheme, base.hostname, base.port)
            try:
                response = self._session.get(
                    url,
                    auth=self._auth if ours else None,
                    timeout=self._timeout,
                    stream=True,
                    allow_redirects=False,
                )
            except requests.Timeout:
                raise MediaFetchError("timeout") from None
            except requests.RequestException as exc:
                raise MediaFetchError(f"connection: {type(exc).__name__}") from None
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.get("Location", "")
            response.close()
            nxt = urljoin(url, location)
            parts = urlsplit(nxt)
            same_origin = (parts.scheme, parts.hostname, parts.port) == (
                base.scheme,
                base.hostname,
                base.port,
            )
            if not location or not (parts.scheme == "https" or same_origin):
                raise MediaFetchError("redirect refused: not https", retryable=False)
            url = nxt
        raise MediaFetchError("too many redirects", retryable=False)

    def delete(self, recording_sid: str) -> None:
        """Delete the recording at Twilio (REST API; 404 is gone too); MediaFetchError if it may be there."""
        url = f"{self.api_base}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{recording_sid}.json"
        try:
            response = self._session.delete(url, auth=self._auth, timeout=self._timeout)
        except requests.Timeout:
            raise MediaFetchError("timeout") from None
        except requests.RequestException as exc:
            raise MediaFetchError(f"connection: {type(exc).__name__}") from None
        response.close()
        if response.status_code not in (204, 404):
            raise MediaFetchError(f"http {response.status_code}")


def read_wav_header(path: Path) -> WavInfo:
    """Check a RIFF/WAVE file's chunks and that the data chunk is all there; raise MediaFetchError."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise MediaFetchError("not a WAV file")
        fmt: tuple[int, int, int, int, int] | None = None
        pos = 12
        while True:
            fh.seek(pos)
            chunk = fh.read(8)
            if len(chunk) < 8:
                raise MediaFetchError("truncated: no data chunk")
            cid, clen = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                body = fh.read(16)
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
