"""The staff console over HTTP: sign-in, CSRF, pages in Thai and English, audio ranges, reveals, access."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from app import get_database
from cases.models import Case, CaseStatus, ForwardingProposal, Office, TranscriptCorrection
from cases.staff import AuditEvent, Committee, CommitteeMember, Role, RoleAssignment, User
from console.base import console_clock
from infra.config import Config
from infra.crypto import FieldCipher
from tests.support.seed import seed_bulk_cases, seed_console
from transcription.models import Transcript

COOKIE = "__Host-hotline"  # PUBLIC_BASE_URL of the tests is https


@dataclass
class World:
    """Ids of what seed_console made (objects would be detached from their session)."""

    password: str
    cases: dict[str, int]
    users: dict[str, int]
    offices: dict[str, int]
    recordings: dict[str, int]
    transcripts: dict[str, int]
    committee: int
    pending_proposal: int


def seeded_world(app: Flask, config: Config) -> World:
    """seed_console's world, its recordings sealed on disk, as ids (no transcripts, no proposal)."""
    with get_database(app).session() as session:
        s = seed_console(
            session,
            cipher=FieldCipher(config.data_key),
            recordings_dir=config.recordings_dir,
            recording_key=config.recording_key,
        )
        return World(
            password=s.password,
            cases={k: c.id for k, c in s.cases.items()},
            users={k: u.id for k, u in s.users.items()},
            offices={k: o.id for k, o in s.offices.items()},
            recordings={k: r.id for k, r in s.recordings.items()},
            transcripts={},
            committee=s.committees["cm50"].id,
            pending_proposal=0,
        )


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    with get_database(app).session() as session:
        s = seed_console(
            session,
            cipher=FieldCipher(config.data_key),
            recordings_dir=config.recordings_dir,
            recording_key=config.recording_key,
        )
        recordings = {k: r.id for k, r in s.recordings.items()}
        transcripts = {
            k: session.scalars(select(Transcript.id).where(Transcript.recording_id == rid)).one()
            for k, rid in recordings.items()
        }
        pending = session.scalars(
            select(ForwardingProposal.id).where(
                ForwardingProposal.case_id == s.cases["proposed_50"].id,
                ForwardingProposal.status == "pending",
            )
        ).one()
        return World(
            password=s.password,
            cases={k: c.id for k, c in s.cases.items()},
            users={k: u.id for k, u in s.users.items()},
            offices={k: o.id for k, o in s.offices.items()},
            recordings=recordings,
            transcripts=transcripts,
            committee=s.committees["cm50"].id,
            pending_proposal=pending,
        )


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    fake = FakeClock()
    console_clock.install(app, fake)
    return fake


def token(client: FlaskClient, path: str = "/console/login") -> str:
    """The CSRF token the console put in a page (every page carries it in a meta tag)."""
    page = client.get(path)
    if page.status_code == 302:
        page = client.get("/console/approvals")
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str, **extra: str) -> TestResponse:
    return client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": token(client), **extra},
    )


def post(client: FlaskClient, path: str, **form: str) -> TestResponse:
    return client.post(path, data={"csrf_token": token(client, "/console/approvals"), **form})


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def flashes(client: FlaskClient) -> list[tuple[str, str]]:
    with client.session_transaction() as sess:
        return list(sess.get("_flashes", []))


def audits(app: Flask, action: str) -> list[AuditEvent]:
    with get_database(app).session() as session:
        return list(
            session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        )


def as_user(app: Flask, world: World, username: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, username, world.password).status_code == 302
    return client


def set_locale(client: FlaskClient, locale: str) -> None:
    post(client, "/console/locale", locale=locale, next="/console/")


# ---- sign-in ----------------------------------------------------------------------------------------------


def test_good_login_starts_a_new_session_with_safe_cookie_flags(client: FlaskClient, world: World) -> None:
    with client.session_transaction() as sess:
        sess["sid"] = "planted-by-an-attacker"
        sess["leftover"] = "from before the sign-in"
    response = login(client, "op50", world.password)
    assert response.status_code == 302 and response.headers["Location"] == "/console/"
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    with client.session_transaction() as sess:
        assert sess["sid"] != "planted-by-an-attacker" and len(sess["sid"]) >= 20
        assert "leftover" not in sess
        assert sess["_user_id"].startswith(f"{world.users['op50']}:")
        first_sid = sess["sid"]
    assert client.get("/console/").status_code == 200
    # Signing in again (on the same browser) gives yet another session id.
    client.post("/console/logout", data={"csrf_token": token(client, "/console/approvals")})
    login(client, "op50", world.password)
    with client.session_transaction() as sess:
        assert sess["sid"] != first_sid


def test_a_wrong_password_and_an_unknown_user_read_the_same(client: FlaskClient, world: World) -> None:
    wrong = login(client, "op50", "not the password")
    unknown = login(client, "nobody-here", "not the password")
    assert wrong.status_code == unknown.status_code == 200
    message = re.compile(r'id="login-error">([^<]+)<')
    assert message.search(text(wrong)).group(1) == message.search(text(unknown)).group(1)  # type: ignore[union-attr]
    assert "เข้าสู่ระบบไม่สำเร็จ" in text(wrong)
    assert client.get("/console/").status_code == 302


def test_five_failures_lock_the_account_for_fifteen_minutes(
    app: Flask, client: FlaskClient, world: World, clock: FakeClock
) -> None:
    """Five failures close the account to that address (cases.sign_in_limits); other addresses sign in."""
    for _ in range(5):
        assert "login-error" in text(login(client, "head50", "wrong password"))
    # Locked: even the right password fails, with the very same message.
    locked = login(client, "head50", world.password)
    assert "login-error" in text(locked) and client.get("/console/").status_code == 302
    assert [a.detail for a in audits(app, "login_locked")] == [{"minutes": 15, "scope": "address"}]
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert login(elsewhere, "head50", world.password).status_code == 302
    clock.advance(minutes=14)
    assert "login-error" in text(login(client, "head50", world.password))
    clock.advance(minutes=2)
    assert login(client, "head50", world.password).status_code == 302
    assert client.get("/console/").status_code == 200


def test_many_failures_from_one_address_are_throttled(client: FlaskClient, world: World) -> None:
    for i in range(20):
        assert login(client, f"guess{i}", "x").status_code == 200
    throttled = login(client, "op50", world.password)
    assert throttled.status_code == 429
    assert client.get("/console/").status_code == 302


def test_unsafe_next_targets_are_ignored(client: FlaskClient, world: World) -> None:
    response = login(client, "op50", world.password, next="https://evil.example/steal")
    assert response.headers["Location"] == "/console/"
    client.post("/console/logout", data={"csrf_token": token(client, "/console/approvals")})
    response = login(client, "op50", world.password, next=f"/console/cases/{world.cases['routed_50']}")
    assert response.headers["Location"] == f"/console/cases/{world.cases['routed_50']}"


def test_logout_ends_the_session_and_a_copied_cookie_stops_working(app: Flask, world: World) -> None:
    client = as_user(app, world, "op50")
    stolen = client.get_cookie(COOKIE)
    assert stolen is not None
    response = post(client, "/console/logout")
    assert response.status_code == 302 and response.headers["Location"] == "/console/login"
    assert client.get("/console/").status_code == 302
    with client.session_transaction() as sess:
        assert "_user_id" not in sess
    replay = app.test_client()
    replay.set_cookie(COOKIE, stolen.value)
    assert replay.get("/console/").status_code == 302


def test_changing_the_session_token_ends_every_session(app: Flask, world: World) -> None:
    first, second = as_user(app, world, "op50"), as_user(app, world, "op50")
    assert first.get("/console/").status_code == second.get("/console/").status_code == 200
    with get_database(app).session() as session:
        user = session.get(User, world.users["op50"])
        assert user is not None
        user.session_token = "rotated" + "0" * 57
    assert first.get("/console/").status_code == 302
    assert second.get("/console/").status_code == 302


def test_idle_timeout(app: Flask, world: World, clock: FakeClock) -> None:
    client = as_user(app, world, "op50")
    for _ in range(3):  # busy for an hour and a half: each request restarts the idle clock
        clock.advance(minutes=29)
        assert client.get("/console/").status_code == 200
    clock.advance(minutes=31)
    response = client.get("/console/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/console/login")
    assert ("info", "หมดเวลาการใช้งาน กรุณาเข้าสู่ระบบอีกครั้ง") in flashes(client)
    assert client.get("/console/approvals").status_code == 302


def test_absolute_timeout(app: Flask, world: World, clock: FakeClock) -> None:
    client = as_user(app, world, "op50")
    with client.session_transaction() as sess:
        sess["since"] = (clock.now - timedelta(hours=12, minutes=1)).timestamp()
    assert client.get("/console/").status_code == 302


# ---- CSRF ----------------------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused(app: Flask, client: FlaskClient, world: World) -> None:
    no_token = client.post("/console/login", data={"username": "op50", "password": world.password})
    assert no_token.status_code == 400
    signed_in = as_user(app, world, "op50")
    case_id = world.cases["routed_50"]
    refused = signed_in.post(
        f"/console/cases/{case_id}/summary", data={"summary": "x", "category": "violence"}
    )
    assert refused.status_code == 400
    forged = signed_in.post(
        f"/console/cases/{case_id}/summary",
        data={"summary": "x", "category": "violence", "csrf_token": "forged"},
    )
    assert forged.status_code == 400
    with get_database(app).session() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.summary is None


def test_twilio_webhooks_need_no_csrf_token(new_caller: Callable[..., object], world: World) -> None:
    caller = new_caller()
    response = caller.post("/twilio/voice")  # type: ignore[attr-defined]
    assert response.status_code == 200 and "<Response>" in response.get_data(as_text=True)


# ---- pages, languages, headers -------------------------------------------------------------------


def _be_year(app: Flask, case_id: int) -> tuple[str, str]:
    with get_database(app).session() as session:
        case = session.get(Case, case_id)
        assert case is not None
        local = case.created_at.astimezone(ZoneInfo("Asia/Bangkok"))
    return str(local.year + 543), str(local.year)


PAGES_FOR = {
    "head50": ["/console/", "/console/approvals", "/console/assignments", "/console/offices"],
    "admin50": ["/console/offices"],
    "agent": ["/console/"],
}


@pytest.mark.parametrize("locale", ["th", "en"])
def test_every_page_renders_in_both_languages(app: Flask, world: World, locale: str) -> None:
    be, ce = _be_year(app, world.cases["routed_50"])
    words = {
        "th": ["คิวงานของฉัน", "ออกจากระบบ", 'lang="th"'],
        "en": ["My queue", "Sign out", 'lang="en"'],
    }[locale]
    head = as_user(app, world, "head50")
    set_locale(head, locale)
    pages = [*PAGES_FOR["head50"], f"/console/offices/{world.offices['50']}"]
    pages += [
        f"/console/cases/{world.cases[k]}"
        for k in world.cases
        if not k.endswith("10") and "draft" not in k  # drafts are the call centre's until routed
    ]
    for path in pages:
        response = head.get(path)
        assert response.status_code == 200, path
        body = text(response)
        for word in words:
            assert word in body, (path, word)
    case_page = text(head.get(f"/console/cases/{world.cases['routed_50']}"))
    if locale == "th":
        assert f"พ.ย. {be}" in case_page or f" {be} " in case_page
        assert "ความรุนแรง" in case_page and "อยู่ที่สำนักงาน" in case_page
    else:
        assert f" {ce} " in case_page and f" {be} " not in case_page
        assert "Violence" in case_page and "At an office" in case_page
    agent = as_user(app, world, "agent")
    set_locale(agent, locale)
    draft = text(agent.get(f"/console/cases/{world.cases['draft_central']}"))
    assert ("ส่งเรื่องไปยังสำนักงาน" if locale == "th" else "Route to an office") in draft
    admin = as_user(app, world, "admin50")
    set_locale(admin, locale)
    office = text(admin.get(f"/console/offices/{world.offices['50']}"))
    assert ("มอบบทบาท" if locale == "th" else "Give the role") in office


def test_thai_is_the_default_and_the_toggle_is_remembered(app: Flask, world: World) -> None:
    client = app.test_client()
    assert "เข้าสู่ระบบ" in text(client.get("/console/login"))
    login(client, "op50", world.password)
    assert "คิวงานของฉัน" in text(client.get("/console/"))
    set_locale(client, "en")
    assert "My queue" in text(client.get("/console/"))
    with get_database(app).session() as session:
        user = session.get(User, world.users["op50"])
        assert user is not None and user.locale == "en"
    # The next sign-in (a new browser) starts in the user's language.
    again = as_user(app, world, "op50")
    assert "My queue" in text(again.get("/console/"))


def test_personal_pages_are_not_cached(app: Flask, world: World) -> None:
    client = as_user(app, world, "op50")
    case_id = world.cases["routed_50"]
    audio = f"/console/recordings/{world.recordings['routed_50']}/audio"
    pages = ["/console/", f"/console/cases/{case_id}", "/console/approvals", "/console/assignments"]
    for path in [*pages, "/console/offices", audio, "/console/login"]:
        with client.get(path) as response:  # closes the streamed file of the audio
            assert response.headers["Cache-Control"] == "no-store", path
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    with client.get("/console/static/console.css") as css:
        assert css.status_code == 200 and "no-store" not in css.headers.get("Cache-Control", "")


# ---- recordings ----------------------------------------------------------------------------------


def fetch(client: FlaskClient, url: str, **headers: str) -> TestResponse:
    """GET and read the whole body, closing the file a streamed recording holds open."""
    with client.get(url, headers=headers) as response:
        response.get_data()
        return response


def test_the_recording_streams_with_range_requests(app: Flask, world: World) -> None:
    client = as_user(app, world, "op50")
    url = f"/console/recordings/{world.recordings['routed_50']}/audio"
    full = fetch(client, url)
    assert full.status_code == 200 and full.mimetype == "audio/wav"
    assert full.headers["Accept-Ranges"] == "bytes" and full.data[:4] == b"RIFF"
    size = len(full.data)
    part = fetch(client, url, Range="bytes=100-1099")
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-1099/{size}"
    assert part.data == full.data[100:1100]
    tail = fetch(client, url, Range="bytes=-44")
    assert tail.status_code == 206 and tail.data == full.data[-44:]
    beyond = fetch(client, url, Range=f"bytes={size + 10}-")
    assert beyond.status_code == 416


def test_a_foreign_recording_is_404_and_audited(app: Flask, world: World) -> None:
    client = as_user(app, world, "op10")
    url = f"/console/recordings/{world.recordings['routed_50']}/audio"
    assert client.get(url).status_code == 404
    assert client.get(url, headers={"Range": "bytes=0-10"}).status_code == 404
    refused = audits(app, "access_refused")
    assert [(a.user_id, a.detail["what"], a.detail["id"]) for a in refused] == [
        (world.users["op10"], "recording", world.recordings["routed_50"])
    ] * 2


def test_a_foreign_or_missing_case_and_transcript_are_404_and_audited(app: Flask, world: World) -> None:
    client = as_user(app, world, "op5001")
    assert client.get(f"/console/cases/{world.cases['routed_50']}").status_code == 404
    assert client.get("/console/cases/999999").status_code == 404
    assert client.get(f"/console/transcripts/{world.transcripts['routed_10']}").status_code == 404
    mine = client.get(f"/console/transcripts/{world.transcripts['district_5001']}")
    assert mine.status_code == 302
    assert mine.headers["Location"].endswith(
        f"/console/cases/{world.cases['district_5001']}#recording-{world.recordings['district_5001']}"
    )
    refused = audits(app, "access_refused")
    assert [(a.detail["what"], a.case_id) for a in refused] == [
        ("case", world.cases["routed_50"]),
        ("case", 999999),
        ("transcript", None),
    ]


# ---- the reporter's number -----------------------------------------------------------------------


def _number_of(app: Flask, config: Config, case_id: int) -> str:
    with get_database(app).session() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.callback_number_enc
        return FieldCipher(config.data_key).decrypt(case.callback_number_enc)


def test_reveal_shows_the_number_once_and_audits_it(
    app: Flask, config: Config, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    case_id = world.cases["routed_50"]
    number = _number_of(app, config, case_id)
    digits = number[-9:]
    client = as_user(app, world, "op50")
    page = text(client.get(f"/console/cases/{case_id}"))
    assert digits not in page and "reveal-reason" in page
    empty = post(client, f"/console/cases/{case_id}/reveal", reason="  ")
    assert empty.status_code == 302 and audits(app, "reveal_number") == []
    shown = post(client, f"/console/cases/{case_id}/reveal", reason="โทรกลับตามที่ผู้แจ้งขอ")
    assert shown.status_code == 200 and digits in text(shown)
    assert shown.headers["Cache-Control"] == "no-store"
    assert "Location" not in shown.headers
    (row,) = audits(app, "reveal_number")
    assert (row.user_id, row.case_id, row.reason) == (world.users["op50"], case_id, "โทรกลับตามที่ผู้แจ้งขอ")
    assert digits not in text(client.get(f"/console/cases/{case_id}"))  # once: not kept on the case page
    assert digits not in caplog.text
    for _k, v in flashes(client):
        assert digits not in v


def test_reveal_is_refused_and_audited_for_those_who_may_not(
    app: Flask, config: Config, world: World
) -> None:
    case_id = world.cases["routed_50"]
    digits = _number_of(app, config, case_id)[-9:]
    agent = as_user(app, world, "agent")  # sees every case, but does not work this one
    page = text(agent.get(f"/console/cases/{case_id}"))
    assert "reveal-reason" not in page
    refused = post(agent, f"/console/cases/{case_id}/reveal", reason="curious")
    assert refused.status_code == 302 and digits not in text(refused)
    assert [(a.user_id, a.case_id) for a in audits(app, "reveal_number_refused")] == [
        (world.users["agent"], case_id)
    ]
    outsider = as_user(app, world, "op10")
    assert post(outsider, f"/console/cases/{case_id}/reveal", reason="curious").status_code == 404
    assert audits(app, "reveal_number") == []
    # The assigned SC-Action person of a case may.
    action = as_user(app, world, "action50")
    in_action = world.cases["in_action_50"]
    ok = post(action, f"/console/cases/{in_action}/reveal", reason="นัดหมายผู้แจ้ง")
    assert ok.status_code == 200 and _number_of(app, config, in_action)[-9:] in text(ok)


# ---- the workflow through the pages --------------------------------------------------------------


def _status(app: Flask, case_id: int) -> CaseStatus:
    with get_database(app).session() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return CaseStatus(case.status)


def test_a_case_from_the_phone_line_to_resolution(app: Flask, world: World) -> None:
    case_id = world.cases["draft_central"]
    rec = world.recordings["draft_central"]
    agent = as_user(app, world, "agent")
    post(agent, f"/console/cases/{case_id}/recordings/{rec}/correction", text="มีนักเรียนถูกรังแกที่โรงเรียนทุกวัน")
    with get_database(app).session() as session:
        correction = session.scalars(select(TranscriptCorrection)).one()
        transcript = session.scalars(select(Transcript).where(Transcript.recording_id == rec)).one()
        assert correction.text == "มีนักเรียนถูกรังแกที่โรงเรียนทุกวัน" and "รังแก" in (transcript.text or "")
    page = text(agent.get(f"/console/cases/{case_id}"))
    assert "มีนักเรียนถูกรังแกที่โรงเรียนทุกวัน" in page and '<mark class="low"' in page
    wrong_district = post(agent, f"/console/cases/{case_id}/route", province="50", district="1001")
    assert wrong_district.status_code == 302 and _status(app, case_id) == CaseStatus.DRAFT
    post(agent, f"/console/cases/{case_id}/route", province="50", district="", category="violence")
    assert _status(app, case_id) == CaseStatus.ROUTED

    op = as_user(app, world, "op50")
    post(op, f"/console/cases/{case_id}/summary", summary="นักเรียนถูกรังแก", category="violence")
    post(op, f"/console/cases/{case_id}/proposals", target=f"user:{world.users['action50']}", note="ด่วน")
    assert _status(app, case_id) == CaseStatus.PROPOSED
    with get_database(app).session() as session:
        proposal = session.scalars(
            select(ForwardingProposal).where(ForwardingProposal.case_id == case_id)
        ).one()
    own = post(op, f"/console/proposals/{proposal.id}/decision", decision="approve")
    assert own.status_code == 302 and _status(app, case_id) == CaseStatus.PROPOSED
    assert ("error", "ไม่มีผู้ใดอนุมัติข้อเสนอของตนเองได้ ต้องให้หัวหน้า SC-Operator ท่านอื่นพิจารณา") in flashes(op)

    head = as_user(app, world, "head50")
    approvals = text(head.get("/console/approvals"))
    assert f"/console/proposals/{proposal.id}/decision" in approvals
    post(head, f"/console/proposals/{proposal.id}/decision", decision="approve", next="/console/approvals")
    assert _status(app, case_id) == CaseStatus.ASSIGNED

    action = as_user(app, world, "action50")
    assert f"/console/cases/{case_id}" in text(action.get("/console/assignments"))
    post(action, f"/console/cases/{case_id}/acknowledge")
    assert _status(app, case_id) == CaseStatus.IN_ACTION
    post(action, f"/console/cases/{case_id}/actions", text="ประสานครูประจำชั้น")
    post(action, f"/console/cases/{case_id}/resolve", outcome="เหตุยุติ ครูดูแลใกล้ชิด")
    assert _status(app, case_id) == CaseStatus.RESOLVED
    timeline = text(action.get(f"/console/cases/{case_id}"))
    for words in ("ส่งเรื่องถึงสำนักงาน", "เสนอส่งต่อ", "อนุมัติการส่งต่อ", "รับทราบ", "ยุติเรื่องแล้ว"):
        assert words in timeline


def test_a_rejection_needs_a_reason_and_an_illegal_move_is_named(app: Flask, world: World) -> None:
    head = as_user(app, world, "head50")
    set_locale(head, "en")
    pid = world.pending_proposal
    post(head, f"/console/proposals/{pid}/decision", decision="reject", reason="")
    assert ("error", "Give a reason for rejecting the proposal.") in flashes(head)
    post(head, f"/console/proposals/{pid}/decision", decision="reject", reason="ส่งผิดคน")
    assert _status(app, world.cases["proposed_50"]) == CaseStatus.ROUTED
    post(head, f"/console/cases/{world.cases['resolved_50']}/acknowledge")
    assert ("error", "A case that is “Resolved” cannot be given the action “acknowledge”.") in flashes(head)


def test_forms_are_shown_to_those_who_may_use_them(app: Flask, world: World) -> None:
    routed = f"/console/cases/{world.cases['routed_50']}"
    forms = {
        "op50": text(as_user(app, world, "op50").get(routed)),
        "action50": text(as_user(app, world, "action50").get(routed)),
        "agent": text(as_user(app, world, "agent").get(routed)),
    }
    assert 'id="summary-text"' in forms["op50"] and 'id="propose-target"' in forms["op50"]
    assert 'id="summary-text"' not in forms["action50"] and 'id="propose-target"' not in forms["action50"]
    assert 'id="route-province"' in forms["agent"] and 'id="summary-text"' not in forms["agent"]
    head = text(as_user(app, world, "head50").get(f"/console/cases/{world.cases['proposed_50']}"))
    assert "reject-reason-" in head
    proposer = text(as_user(app, world, "op50").get(f"/console/cases/{world.cases['proposed_50']}"))
    assert "reject-reason-" not in proposer


# ---- the queue -----------------------------------------------------------------------------------


def _refs(html: str) -> list[str]:
    return re.findall(r'class="ref" href="/console/cases/(\d+)"', html)


def test_queue_filters_sorting_pages_and_counts(app: Flask, world: World) -> None:
    with get_database(app).session() as session:
        seed_bulk_cases(session, 120, office_codes=["50"])
        open_50 = session.scalar(
            select(func.count(Case.id)).where(
                Case.status.not_in([CaseStatus.RESOLVED, CaseStatus.DRAFT]),
                (Case.office_id == world.offices["50"])
                | (Case.forwarded_from_office_id == world.offices["50"]),
            )
        )
    op = as_user(app, world, "op50")
    first = text(op.get("/console/"))
    assert f"ตรงเงื่อนไข {open_50} เรื่อง" in first
    assert len(_refs(first)) == 50
    last_page = (open_50 + 49) // 50
    last = text(op.get(f"/console/?page={last_page}"))
    assert len(_refs(last)) == open_50 - 50 * (last_page - 1)
    assert _refs(text(op.get("/console/?page=999"))) == _refs(last)  # clamped to the last page
    newest = _refs(text(op.get("/console/?order=newest&state=all")))
    oldest = _refs(text(op.get("/console/?order=oldest&state=all")))
    assert newest and oldest and newest[0] != oldest[0]
    with get_database(app).session() as session:
        created = {c.id: c.created_at for c in session.scalars(select(Case))}
    assert [created[int(i)] for i in oldest] == sorted(created[int(i)] for i in oldest)
    assert [created[int(i)] for i in newest] == sorted((created[int(i)] for i in newest), reverse=True)

    resolved = _refs(text(op.get("/console/?state=resolved")))
    with get_database(app).session() as session:
        states = {c.id: c.status for c in session.scalars(select(Case))}
        categories = {c.id: c.category for c in session.scalars(select(Case))}
        anonymous = {c.id: c.anonymous for c in session.scalars(select(Case))}
    assert resolved and all(states[int(i)] == CaseStatus.RESOLVED for i in resolved)
    accidents = _refs(text(op.get("/console/?hazard=accident&state=all")))
    assert accidents and all(categories[int(i)] == "accident" for i in accidents)
    anon = _refs(text(op.get("/console/?callback=anonymous&state=all")))
    assert anon and all(anonymous[int(i)] for i in anon)
    # Seeded without callback rows: none is overdue (tests/integration/test_callbacks.py fills them in).
    assert _refs(text(op.get("/console/?callback=overdue"))) == []
    district = _refs(text(op.get(f"/console/?office={world.offices['5001']}&state=all")))
    assert district == [str(world.cases["district_5001"])]
    # Counts per state, as tabs.
    assert re.search(r"ยุติเรื่องแล้ว <span class=\"count\">\d+</span>", first)
    # Junk in the query string falls back to the defaults.
    assert op.get("/console/?state=evil&page=-3&order=x&hazard=y&office=z&callback=q").status_code == 200


def test_the_queue_shows_only_visible_cases(app: Flask, world: World) -> None:
    op10 = _refs(text(as_user(app, world, "op10").get("/console/?state=all")))
    assert op10 == [str(world.cases["routed_10"])]
    district = _refs(text(as_user(app, world, "op5001").get("/console/?state=all")))
    assert district == [str(world.cases["district_5001"])]
    everything = _refs(text(as_user(app, world, "agent").get("/console/?state=all")))
    assert sorted(everything) == sorted(str(i) for i in world.cases.values())


# ---- offices, staff, committees ------------------------------------------------------------------


def test_office_admin_manages_roles_and_committees(app: Flask, world: World) -> None:
    office = world.offices["50"]
    admin = as_user(app, world, "admin50")
    post(admin, f"/console/offices/{office}/roles", username="op5001", role="action")
    post(admin, f"/console/offices/{office}/committees", name="คณะทำงานชุดที่ 2")
    with get_database(app).session() as session:
        committee = session.scalars(select(Committee).where(Committee.name == "คณะทำงานชุดที่ 2")).one()
    post(admin, f"/console/committees/{committee.id}/members", username="op5001")
    with get_database(app).session() as session:
        assert session.scalars(
            select(CommitteeMember).where(CommitteeMember.committee_id == committee.id)
        ).all()
    page = text(admin.get(f"/console/offices/{office}"))
    assert "ชูชาติ อำเภอเมือง" in page and "คณะทำงานชุดที่ 2" in page
    # Taking SC-Action away also takes the person off the office's committees.
    post(admin, f"/console/offices/{office}/roles/remove", user_id=str(world.users["op5001"]), role="action")
    with get_database(app).session() as session:
        assert not session.scalars(
            select(CommitteeMember).where(CommitteeMember.committee_id == committee.id)
        ).all()
    post(admin, f"/console/committees/{committee.id}/remove")
    # The committee with cases in its history stays.
    post(admin, f"/console/committees/{world.committee}/remove")
    assert ("error", "คณะทำงานนี้มีประวัติการรับเรื่องแล้ว ให้นำสมาชิกออกแทนการลบ") in flashes(admin)
    post(admin, f"/console/offices/{office}/roles/remove", user_id=str(world.users["admin50"]), role="admin")
    with get_database(app).session() as session:
        assert session.get(Committee, committee.id) is None
        assert session.scalar(
            select(RoleAssignment.id).where(
                RoleAssignment.user_id == world.users["admin50"], RoleAssignment.role == Role.ADMIN
            )
        )
        granted = session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("role_%"))).all()
        assert granted == ["role_granted", "role_revoked"]


def test_non_admins_cannot_change_staff_and_see_the_operator_warning(app: Flask, world: World) -> None:
    op = as_user(app, world, "op50")
    page = text(op.get(f"/console/offices/{world.offices['50']}"))
    assert "grant-username" not in page and "น้อยกว่า ๒ คน" not in page
    post(op, f"/console/offices/{world.offices['50']}/roles", username="op10", role="operator")
    assert ("error", "เฉพาะผู้ดูแลสำนักงานนี้เท่านั้นที่แก้ไขเจ้าหน้าที่และคณะทำงานได้") in flashes(op)
    with get_database(app).session() as session:
        assert (
            session.scalar(
                select(func.count(RoleAssignment.id)).where(RoleAssignment.office_id == world.offices["50"])
            )
            == 5
        )
    op10 = as_user(app, world, "op10")
    assert "แนวทางกำหนดไม่น้อยกว่า ๒ คน" in text(op10.get(f"/console/offices/{world.offices['10']}"))
    assert "สำนักงานนี้มี SC-Operator น้อยกว่า ๒ คน" in text(op10.get("/console/offices"))
    assert op10.get(f"/console/offices/{world.offices['50']}").status_code == 403


# ---- the command line ----------------------------------------------------------------------------


def test_users_commands_make_a_first_admin(app: Flask) -> None:
    runner = app.test_cli_runner()
    made = runner.invoke(
        args=["users", "create", "Boss", "--name", "ผู้อำนวยการ", "--password-stdin"], input="a long password\n"
    )
    assert made.exit_code == 0, made.output
    taken = runner.invoke(
        args=["users", "create", "boss", "--name", "x", "--password-stdin"], input="a long password\n"
    )
    assert taken.exit_code != 0 and "taken" in taken.output
    short = runner.invoke(
        args=["users", "create", "shorty", "--name", "x", "--password-stdin"], input="short\n"
    )
    assert short.exit_code != 0 and "at least 10" in short.output
    assert runner.invoke(args=["users", "grant", "boss", "admin", "central"]).exit_code == 0
    assert runner.invoke(args=["users", "grant", "boss", "operator", "50"]).exit_code == 0
    agent_at_province = runner.invoke(args=["users", "grant", "boss", "agent", "50"])
    assert agent_at_province.exit_code != 0 and "central" in agent_at_province.output
    listed = runner.invoke(args=["users", "list"])
    assert (
        "boss\tผู้อำนวยการ\t" in listed.output
        and "admin@central" in listed.output
        and "operator@50" in listed.output
    )
    assert runner.invoke(args=["users", "revoke", "boss", "operator", "50"]).exit_code == 0
    assert "operator@50" not in runner.invoke(args=["users", "list"]).output
    client = app.test_client()
    assert login(client, "boss", "a long password").status_code == 302
    assert client.get("/console/offices").status_code == 200
    assert (
        runner.invoke(
            args=["users", "password", "boss", "--password-stdin"], input="another long one\n"
        ).exit_code
        == 0
    )
    assert client.get("/console/").status_code == 302  # the password change ended the session
    with get_database(app).session() as session:
        boss = session.scalars(select(User).where(User.username == "boss")).one()
        assert boss.password_hash.startswith("scrypt:")


# ---- the access matrix ---------------------------------------------------------------------------

USERS = ["anonymous", "agent", "op50", "head50", "action50", "admin50", "op10", "op5001"]
# Each user's own case and a foreign one (another office's); the agent at the central office sees both.
OWN_CASE = {
    "agent": "draft_central",
    "op50": "routed_50",
    "head50": "routed_50",
    "action50": "in_action_50",
    "admin50": "routed_50",
    "op10": "routed_10",
    "op5001": "district_5001",
    "anonymous": "routed_50",
}
FOREIGN_CASE = {u: "routed_10" for u in USERS} | {"op10": "routed_50", "op5001": "routed_50"}
SEES_FOREIGN_CASE = {"agent"}
OWN_OFFICE = {
    "agent": "central", "op50": "50", "head50": "50", "action50": "50", "admin50": "50", "op10": "10",
    "op5001": "5001", "anonymous": "50",
}  # fmt: skip
FOREIGN_OFFICE = {u: "10" for u in USERS} | {"op10": "50", "op5001": "50"}
SEES_FOREIGN_OFFICE = {"agent"}  # the central office is above every office
# The pending proposal is at Chiang Mai (50): its case is visible to the central office and Chiang Mai.
SEES_PROPOSAL = {"agent", "op50", "head50", "action50", "admin50"}
# The committee is at Chiang Mai: its staff page is visible to Chiang Mai and the central office.
SEES_COMMITTEE = SEES_PROPOSAL

# (method, path, what it is about, answer when allowed); placeholders: case rec tr office proposal committee
ROUTES: list[tuple[str, str, str, int]] = [
    ("GET", "/console/", "none", 200),
    ("GET", "/console/approvals", "none", 200),
    ("GET", "/console/assignments", "none", 200),
    ("GET", "/console/offices", "none", 200),
    ("GET", "/console/cases/{case}", "case", 200),
    ("GET", "/console/recordings/{rec}/audio", "case", 200),
    ("GET", "/console/transcripts/{tr}", "case", 302),
    ("POST", "/console/cases/{case}/route", "case", 302),
    ("POST", "/console/cases/{case}/recordings/{rec}/correction", "case", 302),
    ("POST", "/console/cases/{case}/summary", "case", 302),
    ("POST", "/console/cases/{case}/proposals", "case", 302),
    ("POST", "/console/cases/{case}/acknowledge", "case", 302),
    ("POST", "/console/cases/{case}/actions", "case", 302),
    ("POST", "/console/cases/{case}/resolve", "case", 302),
    ("POST", "/console/cases/{case}/reveal", "case", 302),
    ("POST", "/console/proposals/{proposal}/decision", "proposal", 302),
    ("GET", "/console/offices/{office}", "office", 200),
    ("POST", "/console/offices/{office}/roles", "office", 302),
    ("POST", "/console/offices/{office}/committees", "office", 302),
    ("POST", "/console/committees/{committee}/members", "committee", 302),
]


def expected(user: str, about: str, scope: str, allowed: int) -> int:
    """The matrix: what each user gets for each kind of route, for their own office and a foreign one."""
    if user == "anonymous":
        return 302  # to the sign-in page
    if about == "none":
        return allowed
    if about == "case":
        return allowed if scope == "own" or user in SEES_FOREIGN_CASE else 404
    if about == "office":
        return allowed if scope == "own" or user in SEES_FOREIGN_OFFICE else 403
    if about == "proposal":
        return allowed if user in SEES_PROPOSAL else 404
    if about == "committee":
        return allowed if user in SEES_COMMITTEE else 403
    raise AssertionError(about)


def _matrix_rows() -> Iterator[tuple[str, str, str, str, str, int]]:
    for user in USERS:
        for method, path, about, allowed in ROUTES:
            for scope in ("own", "foreign") if about in ("case", "office") else ("own",):
                yield user, scope, method, path, about, expected(user, about, scope, allowed)


def test_access_matrix(app: Flask, world: World) -> None:
    """Every console route, every role, own and foreign office: the answer, and no change of state."""
    before = {k: _status(app, v) for k, v in world.cases.items()}
    clients: dict[str, FlaskClient] = {}
    mismatches = []
    for user, scope, method, path, _about, want in _matrix_rows():
        client = clients.get(user)
        if client is None:
            client = clients[user] = app.test_client()
            if user != "anonymous":
                assert login(client, user, world.password).status_code == 302
        case_key = OWN_CASE[user] if scope == "own" else FOREIGN_CASE[user]
        office_key = OWN_OFFICE[user] if scope == "own" else FOREIGN_OFFICE[user]
        url = path.format(
            case=world.cases[case_key],
            rec=world.recordings[case_key],
            tr=world.transcripts[case_key],
            office=world.offices[office_key],
            proposal=world.pending_proposal,
            committee=world.committee,
        )
        if method == "GET":
            with client.get(url) as response:  # closes a streamed recording
                got = response.status_code
        else:
            # Empty forms: every action is refused by its own rules, so the matrix changes nothing.
            got = client.post(url, data={"csrf_token": token(client)}).status_code
        if got != want:
            mismatches.append(f"{user:9} {scope:7} {method:4} {path:55} want {want} got {got}")
        if user == "anonymous" and method == "GET":
            assert client.get(url).headers.get("Location", "").startswith("/console/login"), url
    assert not mismatches, "\n" + "\n".join(mismatches)
    assert {k: _status(app, v) for k, v in world.cases.items()} == before
    with get_database(app).session() as session:
        assert session.scalar(select(func.count(Office.id))) == 1006
