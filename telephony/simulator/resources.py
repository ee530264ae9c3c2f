"""What the fake Twilio holds for its REST reads: recordings (with or without media) and calls, rendered
as the 2010-04-01 API renders them (``Recordings.json`` pages, ``Recordings/{Sid}.json``,
``Calls/{Sid}.json``)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qs, urlencode

from telephony.simulator.audio import wav_duration
from telephony.simulator.twilio_api import API_VERSION, rfc2822, twilio_error

MEDIA_PATH_RE: Final = re.compile(
    r"/2010-04-01/Accounts/(?P<account>[^/]+)/Recordings/(?P<sid>[^/.]+)(?P<ext>\.[A-Za-z0-9]+)?"
)
RECORDING_LIST_RE: Final = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Recordings\.json")
CALL_PATH_RE: Final = re.compile(r"/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<sid>[^/.]+)\.json")
CALL_END_STATUSES: Final = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000
_DATE_FILTER_OPS: Final = frozenset({"", "<", "<=", ">", ">="})


@dataclass
class HeldRecording:
    sid: str
    wav: bytes | None  # None: no media (an ``absent`` recording)
    call_sid: str | None
    duration_s: int
    status: str
    date_created: datetime
    seq: int  # registration order: the tie-break between equal creation times


@dataclass
class HeldCall:
    sid: str
    from_: str
    to: str
    direction: str
    status: str
    date_created: datetime
    end_time: datetime | None = None
    duration_s: int | None = None


def date_filter(key: str, value: str) -> Callable[[datetime], bool]:
    """One ``DateCreated`` filter of a list request; ValueError when it is not one Twilio reads.

    ``DateCreated=D`` matches that UTC day; ``DateCreated<=D`` (sent as the key ``DateCreated<``) and
    ``DateCreated>=D`` (``DateCreated>``) are inclusive. D is ``YYYY-MM-DD`` (compared by UTC day) or an
    ISO 8601 time such as ``2024-05-01T00:00:00Z`` (what twilio-python sends; compared as an instant).
    """
    op = key[len("DateCreated") :]
    if op not in _DATE_FILTER_OPS:
        raise ValueError(f"unknown filter {key!r}")
    text = value.strip()
    try:
        if "T" not in text:
            day = datetime.strptime(text, "%Y-%m-%d").date()
            if op == "":
                return lambda created: created.astimezone(UTC).date() == day
            if op.startswith("<"):
                return lambda created: created.astimezone(UTC).date() <= day
            return lambda created: created.astimezone(UTC).date() >= day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{key} {value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if op == "":
        return lambda created: created.astimezone(UTC).date() == moment.astimezone(UTC).date()
    if op.startswith("<"):
        return lambda created: created <= moment
    return lambda created: created >= moment


def recording_json(account_sid: str, held: HeldRecording, media_base: str) -> dict[str, object]:
    """One recording as ``GET …/Recordings/{Sid}.json`` renders it."""
    path = f"/{API_VERSION}/Accounts/{account_sid}/Recordings/{held.sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "call_sid": held.call_sid,
        "conference_sid": None,
        "channels": 1,
        "date_created": rfc2822(held.date_created),
        "date_updated": rfc2822(held.date_created),
        "start_time": rfc2822(held.date_created),
        "price": None,
        "price_unit": "USD",
        "duration": str(held.duration_s),
        "sid": held.sid,
        "source": "RecordVerb",
        "status": held.status,
        "error_code": 16101 if held.status == "absent" else None,
        "encryption_details": None,
        "media_url": media_base + path,
        "uri": path + ".json",
        "subresource_uris": {
            "add_on_results": path + "/AddOnResults.json",
            "transcriptions": path + "/Transcriptions.json",
        },
    }


def call_json(account_sid: str, held: HeldCall) -> dict[str, object]:
    """One call as ``GET …/Calls/{Sid}.json`` renders it."""
    path = f"/{API_VERSION}/Accounts/{account_sid}/Calls/{held.sid}"
    ended = held.end_time is not None
    return {
        "account_sid": account_sid,
        "annotation": None,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(held.date_created),
        "date_updated": rfc2822(held.end_time or held.date_created),
        "direction": held.direction,
        "duration": str(held.duration_s or 0) if ended else None,
        "end_time": rfc2822(held.end_time) if held.end_time is not None else None,
        "forwarded_from": None,
        "from": held.from_,
        "from_formatted": held.from_,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": held.sid,
        "start_time": None if held.status == "queued" else rfc2822(held.date_created),
        "status": held.status,
        "subresource_uris": {
            "notifications": path + "/Notifications.json",
            "recordings": path + "/Recordings.json",
        },
        "to": held.to,
        "to_formatted": held.to,
        "trunk_sid": None,
        "uri": path + ".json",
    }


class Holdings:
    """The recordings and calls of one fake Twilio account, and the REST reads that list and show them."""

    def __init__(self, account_sid: str) -> None:
        self.account_sid = account_sid
        self.lock = threading.Lock()
        self.recordings: dict[str, HeldRecording] = {}
        self.calls: dict[str, HeldCall] = {}
        self._seq = 0

    # recordings
    def add_recording(
        self,
        sid: str,
        wav: bytes | None,
        *,
        call_sid: str | None,
        duration_s: int | None,
        status: str,
        date_created: datetime | None,
    ) -> None:
        if duration_s is None:
            measured = wav_duration(wav) if wav is not None else None
            duration_s = round(measured) if measured is not None else 0
        created = (date_created or datetime.now(UTC)).astimezone(UTC)
        with self.lock:
            self._seq += 1
            self.recordings[sid] = HeldRecording(sid, wav, call_sid, duration_s, status, created, self._seq)

    def delete_recording(self, sid: str) -> bool:
        with self.lock:
            return self.recordings.pop(sid, None) is not None

    def wav(self, sid: str) -> bytes | None:
        """A recording's media; None when there is no such recording or it has none."""
        with self.lock:
            held = self.recordings.get(sid)
            return held.wav if held is not None else None

    def recording_resource(self, sid: str, media_base: Callable[[], str]) -> dict[str, object] | None:
        """The recording's JSON; `media_base` is asked only when there is one (it fails once closed)."""
        with self.lock:
            held = self.recordings.get(sid)
        return recording_json(self.account_sid, held, media_base()) if held is not None else None

    # calls
    def call_started(self, sid: str, from_: str, to: str, direction: str, status: str) -> None:
        held = HeldCall(sid, from_, to, direction, status, datetime.now(UTC))
        with self.lock:
            self.calls[sid] = held

    def call_updated(self, sid: str, status: str, duration_s: int | None) -> None:
        """A call's status changes; a final one (completed, busy, …) ends it, once."""
        with self.lock:
            held = self.calls.get(sid)
            if held is None or held.end_time is not None:
                return
            held.status = status
            if status in CALL_END_STATUSES:
                held.end_time = datetime.now(UTC)
                held.duration_s = duration_s if duration_s is not None else 0

    def call_resource(self, sid: str) -> dict[str, object] | None:
        with self.lock:
            held = self.calls.get(sid)
            return call_json(self.account_sid, held) if held is not None else None

    # the REST reads
    def read(
        self, path: str, query: str, media_base: Callable[[], str]
    ) -> tuple[str, int, dict[str, object]] | None:
        """A REST read (fault key, status, JSON body), or None when `path` is not one (media, say)."""
        form = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if (m := RECORDING_LIST_RE.fullmatch(path)) is not None:
            key = "Recordings"
            found: tuple[int, dict[str, object]] | None = self.recordings_page(form, media_base())
        elif (m := CALL_PATH_RE.fullmatch(path)) is not None:
            key = m["sid"]
            body = self.call_resource(m["sid"])
            found = (200, body) if body is not None else None
        elif (m := MEDIA_PATH_RE.fullmatch(path)) is not None and m["ext"] == ".json":
            key = m["sid"] + ".json"
            body = self.recording_resource(m["sid"], media_base)
            found = (200, body) if body is not None else None
        else:
            return None
        # Credentials of one account on another's path: Twilio's 20003, not a 404 (docs, error 20003).
        if m["account"] != self.account_sid:
            return key, *twilio_error(401, 20003, "Authenticate")
        if found is None:
            return key, *twilio_error(404, 20404, f"The requested resource {path} was not found")
        return key, *found

    def recordings_page(self, query: Mapping[str, str], media_base: str) -> tuple[int, dict[str, object]]:
        """``GET …/Recordings.json``: newest first, filtered by CallSid and DateCreated, one page."""
        try:
            page_size = int(query.get("PageSize", DEFAULT_PAGE_SIZE))
            page = int(query.get("Page", 0))
            tests = [date_filter(k, v) for k, v in query.items() if k.startswith("DateCreated")]
        except ValueError as exc:
            return twilio_error(400, 20001, f"Invalid parameter: {exc}")
        if not 1 <= page_size <= MAX_PAGE_SIZE or page < 0:
            return twilio_error(400, 20001, f"Invalid parameter: PageSize 1-{MAX_PAGE_SIZE}, Page 0 or more")
        call_sid = query.get("CallSid")
        with self.lock:
            held = sorted(self.recordings.values(), key=lambda r: (r.date_created, r.seq), reverse=True)
        matching = [
            r
            for r in held
            if (call_sid is None or r.call_sid == call_sid) and all(test(r.date_created) for test in tests)
        ]
        start = page * page_size
        token = query.get("PageToken", "")
        # Twilio's token names the last item of the page before: the next page starts after it even when
        # recordings were added or deleted meanwhile.
        after = next((i for i, r in enumerate(matching) if "PA" + r.sid == token), None)
        if after is not None:
            start = after + 1
        items = matching[start : start + page_size]
        filters = [(k, v) for k, v in query.items() if k not in ("PageSize", "Page", "PageToken")]
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Recordings.json"

        def uri(number: int, page_token: str | None = None) -> str:
            params = [*filters, ("PageSize", str(page_size)), ("Page", str(number))]
            return base + "?" + urlencode(params + ([("PageToken", page_token)] if page_token else []))

        more = bool(items) and start + len(items) < len(matching)
        return 200, {
            "end": start + max(len(items), 1) - 1,
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1, "PA" + items[-1].sid) if more else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "recordings": [recording_json(self.account_sid, r, media_base) for r in items],
            "start": start,
            "uri": uri(page, token or None),
        }
