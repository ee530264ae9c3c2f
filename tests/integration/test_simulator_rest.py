"""The fake Twilio's REST reads: the Recordings list and a Call, as the 2010-04-01 API shapes them.

Shapes follow twilio-python's own fixtures for these resources (tests/integration/api/v2010/account/
test_recording.py and test_call.py) and the list filters its RecordingList sends (``DateCreated<``,
``DateCreated>``, ``PageSize``, ``Page``, ``PageToken``).
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from telephony.simulator.audio import generate_wav
from telephony.simulator.media_server import MediaServer
from telephony.simulator.run import run_call
from telephony.simulator.script import CallScript
from tests.support.sim_standin import ACCOUNT_SID, AUTH_TOKEN, RECORDED, VOICE, StandIn, serving

AUTH = (ACCOUNT_SID, AUTH_TOKEN)
OTHER_ACCOUNT = "AC" + "2" * 32
RECORDING_KEYS = {
    "sid", "call_sid", "account_sid", "status", "duration", "date_created", "date_updated", "start_time",
    "uri", "source", "channels", "api_version", "conference_sid", "price", "price_unit", "error_code",
    "subresource_uris", "media_url", "encryption_details",
}  # fmt: skip
PAGE_KEYS = {
    "recordings", "first_page_uri", "next_page_uri", "previous_page_uri", "page", "page_size", "start",
    "end", "uri",
}  # fmt: skip


@pytest.fixture
def media() -> Iterator[MediaServer]:
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


def get(url: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    return requests.get(url, timeout=5, **kwargs)


def rfc2822(text: str) -> datetime:
    moment = email.utils.parsedate_to_datetime(text)
    assert moment.tzinfo is not None and moment.utcoffset() is not None
    return moment


def sids(page: dict[str, Any]) -> list[str]:
    return [r["sid"] for r in page["recordings"]]


def held(media: MediaServer, n: int, *, day: int = 1, call_sid: str | None = None) -> str:
    sid = f"RE{n:032x}"
    when = datetime(2024, 5, day, 8, n, tzinfo=UTC)
    media.register(sid, generate_wav(1), call_sid=call_sid or f"CA{n:032x}", date_created=when)
    return sid


# --------------------------------------------------------------------------------------------------
# Recordings.json
# --------------------------------------------------------------------------------------------------


def test_recordings_made_during_calls_are_listed_newest_first_with_twilios_fields(media: MediaServer) -> None:
    with serving(StandIn()) as app:
        first = run_call(app.config(), CallScript.parse("record:4:hangup"), media=media)
        second = run_call(app.config(), CallScript.parse("record:2"), media=media)
        silent = run_call(app.config(), CallScript.parse("hangup"), media=media)

    answer = get(media.rest_url("Recordings"))
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    page = answer.json()
    assert set(page) == PAGE_KEYS
    assert (page["page"], page["page_size"], page["start"], page["next_page_uri"]) == (0, 50, 0, None)
    assert page["previous_page_uri"] is None
    assert page["uri"].startswith(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings.json?")
    items = page["recordings"]
    assert [r["call_sid"] for r in items] == [silent.call_sid, second.call_sid, first.call_sid]
    for item in items:
        assert set(item) == RECORDING_KEYS
        assert item["account_sid"] == ACCOUNT_SID
        assert (item["source"], item["channels"], item["api_version"]) == ("RecordVerb", 1, "2010-04-01")
        assert item["uri"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{item['sid']}.json"
        assert abs((rfc2822(item["date_created"]) - datetime.now(UTC)).total_seconds()) < 600
    absent, two, four = items
    assert (four["sid"], four["duration"], four["status"]) == (first.recordings[0], "4", "completed")
    assert (two["sid"], two["duration"], two["status"]) == (second.recordings[0], "2", "completed")
    assert (absent["duration"], absent["status"], absent["error_code"]) == ("0", "absent", 16101)
    assert get(four["media_url"]).headers["Content-Type"] == "audio/x-wav"
    assert get(absent["media_url"]).status_code == 404  # nothing was heard: no media

    only = get(media.rest_url("Recordings"), params={"CallSid": first.call_sid}).json()
    assert sids(only) == first.recordings
    assert get(media.rest_url("Recordings"), params={"CallSid": "CA" + "0" * 32}).json()["recordings"] == []


def test_a_deleted_recording_is_no_longer_listed_or_fetched(media: MediaServer) -> None:
    kept, gone = held(media, 1), held(media, 2)
    assert requests.delete(media.recording_url(gone) + ".json", auth=AUTH, timeout=5).status_code == 204

    assert sids(get(media.rest_url("Recordings")).json()) == [kept]
    assert get(media.rest_url(f"Recordings/{gone}")).status_code == 404
    assert get(media.rest_url(f"Recordings/{kept}")).json()["sid"] == kept
    assert media.recording_resource(gone) is None


def test_pages_follow_next_page_uri_and_survive_a_delete_between_pages(media: MediaServer) -> None:
    made = [held(media, n) for n in range(1, 6)]
    newest_first = made[::-1]

    page = get(media.rest_url("Recordings"), params={"PageSize": 2}).json()
    assert sids(page) == newest_first[:2]
    assert (page["page"], page["start"], page["end"]) == (0, 0, 1)
    # The reconcile sweep may delete what it attached while it pages; the next page must not skip.
    assert media.delete(newest_first[0])
    seen = sids(page)
    numbers = [page["page"]]
    while page["next_page_uri"]:
        page = get(media.base_url + page["next_page_uri"]).json()
        seen += sids(page)
        numbers.append(page["page"])
        assert page["previous_page_uri"] is not None
    assert seen == newest_first
    assert numbers == [0, 1, 2]
    assert page["page_size"] == 2


def test_date_created_filters_are_inclusive_by_utc_day_and_kept_across_pages(media: MediaServer) -> None:
    may1, may2a, may2b, may3 = (
        held(media, 1, day=1),
        held(media, 2, day=2),
        held(media, 3, day=2),
        held(media, 4, day=3),
    )
    url = media.rest_url("Recordings")

    # Written as Twilio documents them, these arrive as the keys "DateCreated>" and "DateCreated<".
    assert sids(get(url + "?DateCreated>=2024-05-02").json()) == [may3, may2b, may2a]
    assert sids(get(url + "?DateCreated<=2024-05-02").json()) == [may2b, may2a, may1]
    assert sids(get(url + "?DateCreated>=2024-05-02&DateCreated<=2024-05-02").json()) == [may2b, may2a]
    assert sids(get(url, params={"DateCreated": "2024-05-01"}).json()) == [may1]
    # twilio-python sends an ISO 8601 time under "DateCreated>"; it compares as an instant.
    assert sids(get(url, params={"DateCreated>": "2024-05-02T08:03:00Z"}).json()) == [may3, may2b]
    assert sids(get(url, params={"DateCreated<=": "2024-05-01"}).json()) == [may1]

    page = get(url, params={"DateCreated>": "2024-05-02", "PageSize": 1}).json()
    seen = sids(page)
    while page["next_page_uri"]:
        assert "DateCreated%3E=2024-05-02" in page["next_page_uri"]
        page = get(media.base_url + page["next_page_uri"]).json()
        seen += sids(page)
    assert seen == [may3, may2b, may2a]


@pytest.mark.parametrize(
    "params",
    [
        {"DateCreated>": "yesterday"},
        {"PageSize": "0"},
        {"PageSize": "1001"},
        {"Page": "x"},
        {"DateCreated!": "2024-05-01"},
    ],
)
def test_bad_list_parameters_get_twilios_400(media: MediaServer, params: dict[str, str]) -> None:
    answer = get(media.rest_url("Recordings"), params=params)
    assert answer.status_code == 400
    body = answer.json()
    assert (body["status"], body["code"]) == (400, 20001)


def test_the_list_can_be_made_to_fail_like_twilio(media: MediaServer) -> None:
    sid = held(media, 1)
    media.inject("Recordings", "http503")

    assert get(media.rest_url("Recordings")).status_code == 503
    assert sids(get(media.rest_url("Recordings")).json()) == [sid]


# --------------------------------------------------------------------------------------------------
# Calls/{CallSid}.json
# --------------------------------------------------------------------------------------------------


def test_a_call_is_in_progress_while_it_runs_and_completed_after(media: MediaServer) -> None:
    seen_during: list[dict[str, Any]] = []

    def look(path: str, params: dict[str, str]) -> None:
        if path == RECORDED:
            seen_during.append(get(media.rest_url(f"Calls/{params['CallSid']}")).json())

    with serving(StandIn(on_request=look)) as app:
        result = run_call(app.config(), CallScript.parse("record:3"), media=media)
        status_sent = app.to("/twilio/status")[0].params

    (during,) = seen_during
    assert (during["status"], during["end_time"], during["duration"]) == ("in-progress", None, None)
    after = get(media.rest_url(f"Calls/{result.call_sid}")).json()
    assert after["sid"] == result.call_sid
    assert after["account_sid"] == ACCOUNT_SID
    assert (after["status"], after["direction"]) == ("completed", "inbound")
    assert after["duration"] == status_sent["CallDuration"]
    assert (after["from"], after["to"]) == (status_sent["From"], status_sent["To"])
    assert rfc2822(after["start_time"]) <= rfc2822(after["end_time"])
    assert after["uri"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{result.call_sid}.json"
    assert after["subresource_uris"]["recordings"].endswith(f"/Calls/{result.call_sid}/Recordings.json")
    assert media.call_resource(result.call_sid) == after


def test_a_caller_who_hung_up_is_completed_before_the_end_of_call_requests_arrive(media: MediaServer) -> None:
    seen: list[str] = []

    def look(path: str, params: dict[str, str]) -> None:
        if path != VOICE:
            seen.append(get(media.rest_url(f"Calls/{params['CallSid']}")).json()["status"])

    with serving(StandIn(on_request=look)) as app:
        run_call(app.config(), CallScript.parse("record:3:#:hangup"), media=media, hangup_order="concurrent")

    assert seen == ["completed", "completed", "completed"]


def test_an_outbound_call_is_queued_then_completed(media: MediaServer) -> None:
    with serving(StandIn()) as app:
        media.calls.connect(app.base)
        form = {"To": "+66811111111", "From": "+6621266565", "Url": app.base + VOICE}
        created = requests.post(media.rest_url("Calls"), data=form, auth=AUTH, timeout=5).json()
        media.calls.wait(10)

    fetched = get(media.rest_url(f"Calls/{created['sid']}")).json()
    assert (fetched["status"], fetched["direction"], fetched["to"]) == (
        "completed",
        "outbound-api",
        "+66811111111",
    )
    assert fetched["end_time"] is not None


# --------------------------------------------------------------------------------------------------
# Credentials and unknown resources, as Twilio answers them
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["Recordings", "Calls/CA" + "a" * 32, "Recordings/RE" + "a" * 32])
def test_reads_need_the_accounts_credentials(media: MediaServer, resource: str) -> None:
    url = media.rest_url(resource)
    for auth in (None, (ACCOUNT_SID, "wrong"), (OTHER_ACCOUNT, AUTH_TOKEN)):
        answer = requests.get(url, auth=auth, timeout=5)
        assert answer.status_code == 401, auth
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
        assert answer.json()["code"] == 20003
    # Good credentials on another account's path: Twilio's 20003, as for a subaccount's credentials.
    other = get(url.replace(ACCOUNT_SID, OTHER_ACCOUNT))
    assert (other.status_code, other.json()["code"]) == (401, 20003)


def test_an_unknown_call_is_twilios_404(media: MediaServer) -> None:
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/CA{'0' * 32}.json"
    answer = get(media.base_url + path)

    assert answer.status_code == 404
    assert answer.json() == {
        "code": 20404,
        "message": f"The requested resource {path} was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }
    assert media.call_resource("CA" + "0" * 32) is None
