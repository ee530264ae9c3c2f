"""The fake Twilio on a local port: recording media behind basic auth, the REST reads, Messages and Calls."""

from __future__ import annotations

import base64
import hmac
import json
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit

from telephony.simulator.calls_resource import OutboundCalls
from telephony.simulator.faults import Faults, MediaFault
from telephony.simulator.messages import Messages, SentMessage
from telephony.simulator.resources import MEDIA_PATH_RE, Holdings
from telephony.simulator.twilio_api import API_VERSION, twilio_error

# Twilio's REST create endpoints served here (the resource's name: Messages, …).
_REST_CREATE_RE: Final = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/(?P<resource>[A-Za-z]+)\.json")
_UNAUTHORIZED: Final = (
    '{"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",'
    ' "status": 401}'
)

Creator = Callable[[dict[str, str]], tuple[int, dict[str, object]]]


class _MediaHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    media: MediaServer


class MediaHandler(BaseHTTPRequestHandler):
    """One request to the fake Twilio: credentials first, then an injected fault, then the answer."""

    server: _MediaHTTPServer
    server_version = "Twilio.MediaSimulator/1.0"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def do_DELETE(self) -> None:
        media = self.server.media
        path = self.path.split("?", 1)[0]
        media._count(path, "DELETE")
        if not self._authorized():
            return self._unauthorized()
        m = MEDIA_PATH_RE.fullmatch(path)
        if m is None or m["account"] != media.account_sid or m["ext"] not in (None, ".json"):
            return self._not_found(path)
        if media.faults.misbehave(self, "DELETE", m["sid"], None, send_body=True):
            return
        if not media.delete(m["sid"]):
            return self._not_found(path)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        """Twilio's REST create endpoints: `POST /2010-04-01/Accounts/{AccountSid}/{Resource}.json`."""
        media = self.server.media
        path = self.path.split("?", 1)[0]
        media._count(path, "POST")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
        if not self._authorized():
            return self._unauthorized()
        m = _REST_CREATE_RE.fullmatch(path)
        create = media.creators.get(m["resource"]) if m is not None else None
        if m is None or m["account"] != media.account_sid or create is None:
            return self._not_found(path)
        if media.faults.misbehave(self, "POST", m["resource"], None, send_body=True):
            return
        # A repeated parameter (Calls' StatusCallbackEvent) arrives as its values joined by spaces.
        form = {k: " ".join(v) for k, v in parse_qs(raw, keep_blank_values=True).items()}
        status, body = create(form)
        self.send_json(status, json.dumps(body, ensure_ascii=False))

    def _handle(self, *, send_body: bool) -> None:
        media = self.server.media
        path, _, query = self.path.partition("?")
        media._count(path, self.command)
        if not self._authorized():
            return self._unauthorized(send_body=send_body)
        read = media.held.read(path, query, lambda: media.base_url)
        if read is not None:
            key, status, body = read
            if status == 401:
                return self._unauthorized(send_body=send_body)
            if media.faults.misbehave(self, "GET", key, None, send_body=send_body):
                return
            return self.send_json(status, json.dumps(body, ensure_ascii=False), send_body=send_body)
        m = MEDIA_PATH_RE.fullmatch(path)
        wav = media.held.wav(m["sid"]) if m is not None else None
        if m is None or m["account"] != media.account_sid or m["ext"] not in (None, ".wav") or wav is None:
            return self._not_found(path, send_body=send_body)
        if media.faults.misbehave(self, "GET", m["sid"], wav, send_body=send_body):
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/x-wav")
        self.send_header("Content-Length", str(len(wav)))
        self.end_headers()
        if send_body:
            try:
                self.wfile.write(wav)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a "slow" fault outlasted its timeout)

    def _authorized(self) -> bool:
        media = self.server.media
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        expected_user = media.account_sid.encode()
        expected_password = media.auth_token.encode()
        user_ok = hmac.compare_digest(user.encode(), expected_user)
        password_ok = hmac.compare_digest(password.encode(), expected_password)
        return bool(sep) and user_ok and password_ok

    def send_json(
        self, status: int, body: str, *, send_body: bool = True, extra: Mapping[str, str] | None = None
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def _unauthorized(self, *, send_body: bool = True) -> None:
        extra = {"WWW-Authenticate": 'Basic realm="Twilio API"'}
        self.send_json(401, _UNAUTHORIZED, send_body=send_body, extra=extra)

    def _not_found(self, path: str, *, send_body: bool = True) -> None:
        _, body = twilio_error(404, 20404, f"The requested resource {path} was not found")
        self.send_json(404, json.dumps(body), send_body=send_body)


class MediaServer:
    """Serves recordings like Twilio's media with "enforce HTTP auth on media" on.

    ``GET /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}[.wav]`` with basic auth
    (account SID, auth token) returns the WAV (``audio/x-wav``); missing or wrong credentials get 401 with
    ``WWW-Authenticate: Basic realm="Twilio API"``; unknown SIDs, other accounts and ``.mp3`` get 404.
    ``DELETE`` on the same path (or ``.json``) removes a recording (204), like the REST API.
    ``POST …/Messages.json`` (To, From or MessagingServiceSid, Body; basic auth) sends an SMS: 201 with
    Twilio's message JSON (``SM…`` sid), or Twilio's 400 error (21604/21211 To, 21603/21212 From, 21701
    Messaging Service, 21602/21617 Body); :meth:`messages` lists what was sent.
    ``POST …/Calls.json`` places an outbound call and plays it against the app the way Twilio does
    (``calls``, an :class:`OutboundCalls`: its status callbacks, TwiML, ``<Dial>`` legs and AMD).
    ``GET …/Recordings.json`` lists what :meth:`register` holds (every recording a simulated call made,
    ``absent`` ones too, until deleted), filtered by ``CallSid`` and ``DateCreated`` (``=``, ``<=``,
    ``>=``), newest first, ``PageSize`` (default 50) to a page with ``next_page_uri``.
    ``GET …/Recordings/{Sid}.json`` is one recording. ``GET …/Calls/{CallSid}.json`` is a call the
    simulator plays: ``in-progress`` while it runs, its final status, ``duration`` and ``end_time`` from
    the moment the caller hangs up. These reads need the credentials like the media (401 otherwise, and
    for another account's path); unknown SIDs get Twilio's 404 JSON (code 20404).

    For tests, :meth:`inject` makes the next requests for one recording misbehave the ways Twilio's media
    and the network do (errors, slowness, cut-off or non-audio bodies); without it nothing changes. The
    reads take faults too: ``inject("Recordings", …)`` for the list, ``inject(call_sid, …)`` for a call,
    ``inject(recording_sid + ".json", …)`` for one recording's JSON.
    :meth:`requests` lists what was asked, in order, and ``observer`` (if set) is called with the method and
    path of each request before it is answered, in the server's thread.
    """

    def __init__(self, account_sid: str, auth_token: str, *, host: str = "127.0.0.1") -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._host = host
        self.held = Holdings(account_sid)
        self.faults = Faults()
        self.log = RequestLog()
        self._messages = Messages(account_sid)
        # Calls.json and the outbound calls it places (the call-back bridge).
        self.calls = OutboundCalls(self)
        # POST …/{Resource}.json handlers: form -> (status, JSON body).
        self.creators: dict[str, Creator] = {"Messages": self._messages.create, "Calls": self.calls.create}
        self.observer: Callable[[str, str], None] | None = None
        self._server: _MediaHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> MediaServer:
        if self._server is not None:
            return self
        server = _MediaHTTPServer((self._host, 0), MediaHandler)
        server.media = self
        self.faults.closing.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="twilio-media-sim", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self.faults.closing.set()  # a request held back by a "slow" or "stall" fault gives up at once
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # URLs
    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("MediaServer is not running; use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def recording_url(self, recording_sid: str) -> str:
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{recording_sid}"

    def rest_url(self, resource: str) -> str:
        """``Recordings`` -> ``{base}/2010-04-01/Accounts/{AccountSid}/Recordings.json`` (``Calls/CA…``)."""
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/{resource}.json"

    # recordings
    def register(
        self,
        recording_sid: str,
        wav_bytes: bytes | None,
        *,
        call_sid: str | None = None,
        duration_s: int | None = None,
        status: str = "completed",
        date_created: datetime | None = None,
    ) -> str:
        """Store a recording; returns its RecordingUrl (no extension, like Twilio).

        It is listed by ``GET …/Recordings.json`` from now on. ``wav_bytes=None`` holds one without media
        (status ``absent``: Twilio made the recording but heard nothing). ``duration_s`` defaults to the
        WAV's length, ``date_created`` to now (pass an earlier time to test the date filters).
        """
        wav = bytes(wav_bytes) if wav_bytes is not None else None
        self.held.add_recording(
            recording_sid,
            wav,
            call_sid=call_sid,
            duration_s=duration_s,
            status=status,
            date_created=date_created,
        )
        return self.recording_url(recording_sid)

    def delete(self, recording_sid: str) -> bool:
        return self.held.delete_recording(recording_sid)

    def has(self, recording_sid: str) -> bool:
        """Whether the recording's media can be fetched."""
        return self.held.wav(recording_sid) is not None

    def recording_resource(self, recording_sid: str) -> dict[str, object] | None:
        """The recording as ``GET …/Recordings/{Sid}.json`` answers it; None when Twilio holds none."""
        return self.held.recording_resource(recording_sid, lambda: self.base_url)

    # calls (what GET …/Calls/{CallSid}.json answers)
    def call_started(
        self,
        call_sid: str,
        *,
        from_number: str,
        to_number: str,
        direction: str = "inbound",
        status: str = "in-progress",
    ) -> None:
        """A call begins (the simulator calls this for each call it plays)."""
        self.held.call_started(call_sid, from_number, to_number, direction, status)

    def call_updated(self, call_sid: str, status: str, *, duration_s: int | None = None) -> None:
        """A call's status changes; a final one (completed, busy, …) ends it, once."""
        self.held.call_updated(call_sid, status, duration_s)

    def call_resource(self, call_sid: str) -> dict[str, object] | None:
        """The call as ``GET …/Calls/{CallSid}.json`` answers it; None for a call Twilio never had."""
        return self.held.call_resource(call_sid)

    # SMS (Twilio's Messages resource)
    def messages(self) -> list[SentMessage]:
        return self._messages.sent()

    # fault injection (tests)
    def inject(
        self,
        recording_sid: str,
        fault: MediaFault,
        *,
        times: int | None = 1,
        delay_s: float = 2.0,
        method: Literal["GET", "DELETE", "POST"] = "GET",
    ) -> None:
        """Make the next `times` authorised `method` requests for a recording fail with `fault`, then serve.

        For ``POST`` the key is the resource instead of a recording SID ("Messages"; see inject_messages).

        Faults queue in the order injected; ``times=None`` repeats one for good (until :meth:`clear_faults`).
        ``"http500"``, ``"http503"``, ``"http404"``: Twilio's JSON error with that status.
        ``"slow"``: answer normally after `delay_s` (a client whose read timeout is shorter gives up).
        ``"stall"``: send the headers and half the body, then hold the connection for `delay_s`.
        ``"truncated"``: announce the full Content-Length, send half the body, close the connection.
        ``"html"``: 200 with an HTML page instead of audio (a proxy's or a portal's answer).
        Credentials are checked before any fault: wrong ones always get 401.
        """
        self.faults.add(method, recording_sid, fault, times, delay_s)

    def inject_messages(self, fault: MediaFault, *, times: int | None = 1, delay_s: float = 2.0) -> None:
        """Make the next `times` SMS requests fail with `fault` ("http500", "http503", "slow", …)."""
        self.inject("Messages", fault, times=times, delay_s=delay_s, method="POST")

    def clear_faults(self, recording_sid: str | None = None) -> None:
        self.faults.clear(recording_sid)

    # request accounting
    def _count(self, path: str, method: str = "GET") -> None:
        observer = self.observer
        self.log.add(method, path)
        if observer is not None:
            observer(method, path)

    def requests(self, method: str | None = None) -> list[tuple[str, str]]:
        """(method, path) of every request received, in order; only `method`'s when given."""
        return self.log.entries(method)

    def request_count(self, path_or_url: str) -> int:
        """Requests received for a path (a full URL is accepted too; its query is ignored)."""
        return self.log.count(path_or_url)

    @property
    def request_counts(self) -> dict[str, int]:
        return self.log.counts()


class RequestLog:
    """Every request the fake Twilio received: (method, path) in order, and how many per path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._log: list[tuple[str, str]] = []

    def add(self, method: str, path: str) -> None:
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1
            self._log.append((method, path))

    def entries(self, method: str | None = None) -> list[tuple[str, str]]:
        with self._lock:
            return [entry for entry in self._log if method is None or entry[0] == method]

    def count(self, path_or_url: str) -> int:
        path = urlsplit(path_or_url).path if "://" in path_or_url else path_or_url.split("?", 1)[0]
        with self._lock:
            return self._counts.get(path, 0)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
