"""Media redirects: followed within our API base, refused to plain-http hosts, credentials kept home."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.sealed import RecordingCipher, new_recording_key
from telephony.rest import TwilioRest
from telephony.simulator.audio import generate_wav
from transcription.media import MediaClient, MediaFetchError

SID = "AC" + "2" * 32
TOKEN = "media-token"
REC = "RE" + "3" * 32
PATH = f"/2010-04-01/Accounts/{SID}/Recordings/{REC}"


class _Server:
    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.routes = routes
        self.seen: list[tuple[str, str | None]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = owner.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server]]:
    api, other = _Server({}), _Server({})
    yield api, other
    api.close()
    other.close()


def _auth() -> str:
    return "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()


def test_a_redirect_within_the_api_base_is_followed_with_credentials(
    servers: tuple[_Server, _Server], tmp_path: Path
) -> None:
    api, _ = servers
    wav = generate_wav(2.0)
    api.routes[PATH + ".wav"] = (302, {"Location": "/media/abc.wav"}, b"")
    api.routes["/media/abc.wav"] = (200, {"Content-Type": "audio/x-wav"}, wav)
    client = MediaClient(TwilioRest(api.base, SID, TOKEN), RecordingCipher(new_recording_key()))

    stored = client.fetch(api.base + PATH, REC, tmp_path / "r.wav")

    assert stored.size_bytes == len(wav)
    assert abs(stored.duration_s - 2.0) < 0.01
    assert api.seen == [(PATH + ".wav", _auth()), ("/media/abc.wav", _auth())]


def test_a_redirect_to_a_plain_http_host_is_refused_and_never_requested(
    servers: tuple[_Server, _Server], tmp_path: Path
) -> None:
    api, other = servers
    other.routes["/steal"] = (200, {}, generate_wav(1.0))
    api.routes[PATH + ".wav"] = (302, {"Location": other.base + "/steal"}, b"")
    client = MediaClient(TwilioRest(api.base, SID, TOKEN), RecordingCipher(new_recording_key()))

    with pytest.raises(MediaFetchError) as err:
        client.fetch(api.base + PATH, REC, tmp_path / "r.wav")

    assert err.value.retryable is False
    assert "redirect refused" in err.value.reason
    assert other.seen == []
    assert not (tmp_path / "r.wav").exists()


def test_a_redirect_loop_ends(servers: tuple[_Server, _Server], tmp_path: Path) -> None:
    api, _ = servers
    api.routes[PATH + ".wav"] = (302, {"Location": "/loop"}, b"")
    api.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    client = MediaClient(TwilioRest(api.base, SID, TOKEN), RecordingCipher(new_recording_key()))

    with pytest.raises(MediaFetchError, match="too many redirects"):
        client.fetch(api.base + PATH, REC, tmp_path / "r.wav")
    assert len(api.seen) == 4  # the first request and three redirects, then it stops
