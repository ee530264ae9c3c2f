"""Twilio's recording media: fetched from TWILIO_API_BASE only, verified, stored privately, deleted."""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from infra.files import make_private_dirs

API_VERSION = "2010-04-01"
RECORDING_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Recordings/(RE[0-9a-fA-F]{32})$")
CHUNK = 64 * 1024
MAX_REDIRECTS = 3


class MediaRefused(ValueError):
    """The URL is not our account's recording at TWILIO_API_BASE (no SSRF): it is never fetched."""


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
        """Download the WAV to `dest` (mode 0600, written atomically) and verify it."""
        url = self.media_url(recording_url, recording_sid)
        response = self._get_following_redirects(url)
        with response:
            if response.status_code in (401, 403):
                raise MediaFetchError(f"http {response.status_code}: credentials refused")
            if response.status_code == 404:
                raise MediaFetchError("http 404: media not (yet) there")
            if response.status_code != 200:
                raise MediaFetchError(f"http {response.status_code}")
            expected = response.headers.get("Content-Length")
            make_private_dirs(dest.parent)
            tmp = dest.with_name(dest.name + ".part")
            digest = hashlib.sha256()
            size = 0
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as out:
                    try:
                        for chunk in response.iter_content(CHUNK):
                            size += len(chunk)
                            if size > self.max_bytes:
                                raise MediaFetchError("too large", retryable=False)
                            digest.update(chunk)
                            out.write(chunk)
                    except requests.RequestException as exc:
                        raise MediaFetchError(f"interrupted: {type(exc).__name__}") from None
                if expected is not None and expected.isdigit() and int(expected) != size:
                    raise MediaFetchError(f"truncated: {size} of {expected} bytes")
                info = read_wav_header(tmp)
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return StoredMedia(dest, digest.hexdigest(), size, info.duration_s)

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

    def delete(self, recording_sid: str) -> bool:
        """Delete the recording at Twilio (REST API); True when it is gone (404 counts as gone)."""
        url = f"{self.api_base}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{recording_sid}.json"
        try:
            response = self._session.delete(url, auth=self._auth, timeout=self._timeout)
        except requests.RequestException:
            return False
        return response.status_code in (204, 404)


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
