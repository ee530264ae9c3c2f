"""Streaming a sealed recording to the console's player: opened chunk by chunk in memory, with HTTP Range."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, abort, current_app, request

from infra.config import Config
from infra.sealed import RecordingCipher, RecordingKeyError, SealBroken, SealedFile

log = logging.getLogger(__name__)


def sealer(app: Flask) -> RecordingCipher:
    """The app's recording cipher (HOTLINE_RECORDING_KEY), made once with its configuration."""
    cfg: Config = app.config["HOTLINE"]
    return cfg.sealer


def sealed_audio(path: Path, etag: str | None, mimetype: str = "audio/wav") -> Response:
    """The plain audio of the sealed file at `path`, whole (200) or the asked range (206, 416).

    A file that is not sealed, fails authentication or was sealed with a key we do not have is never
    served: 404 for the player, and an error in the log naming the recording's folder.
    """
    try:
        sealed = sealer(current_app._get_current_object()).open(path)  # type: ignore[attr-defined]
    except (SealBroken, RecordingKeyError) as exc:
        log.error("recording in %s not served: %s", path.parent, exc)
        abort(404)
    try:
        # The first chunk is opened here, before any header is sent: a file that is not ours fails now.
        sealed.read_chunk(0)
    except SealBroken as exc:
        sealed.close()
        log.error("recording in %s not served: %s", path.parent, exc)
        abort(404)
    size = sealed.plain_size
    start, stop, status = 0, size, 200
    if request.range is not None:
        found = request.range.range_for_length(size)
        if found is None:
            sealed.close()
            response = Response(status=416)
            response.headers["Content-Range"] = f"bytes */{size}"
            return response
        start, stop, status = found[0], found[1], 206
    response = Response(_stream(sealed, start, stop - start, path), status=status, mimetype=mimetype)
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Content-Length"] = str(stop - start)
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    if etag:
        response.set_etag(etag)
    response.call_on_close(sealed.close)
    return response


def _stream(sealed: SealedFile, start: int, length: int, path: Path) -> Iterator[bytes]:
    try:
        yield from sealed.chunks(start, length)
    except SealBroken as exc:
        # A chunk past the first was changed: the response is cut short rather than finished with garbage.
        log.error("recording in %s cut off while served: %s", path.parent, exc)
        raise
