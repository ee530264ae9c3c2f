"""The notification outbox against real stand-ins: an SMTP server (aiosmtpd), LINE's push API and Twilio's
Messages API as local HTTP servers; retries, backoff, permanent failures, claims, and the console pages."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from flask import Flask
from sqlalchemy import func, select

from app import get_database
from cases.models import Case, Channel, Notification, NotificationAttempt, NotificationStatus, Office
from cases.notifications import (
    KINDS,
    DeliveryTargets,
    Outbox,
    build_outbox,
    install_targets,
    notify,
    render,
)
from cases.notifications.channels import EmailSender, LineSender, SmsSender, message_id, retry_key
from cases.reference import display_reference, new_reference
from cases.staff import Role, RoleAssignment, User
from console.base import console_clock
from infra.config import Config
from infra.crypto import FieldCipher
from infra.db import Database
from telephony.rest import TwilioRest, TwilioRestError
from telephony.simulator.media_server import MediaServer
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE
from tests.integration.test_console import login, post, text
from tests.support.ports import free_port
from tests.support.seed import seed_console
from tests.support.standins import LineServer, SmtpRelay
from transcription.models import Recording, Transcript

GROUP, LINE_TOKEN = "C" + "5" * 32, "line-token-chiang-mai"
SMS_FROM = "+6621266565"
SERVICE_SID = "MG" + "a" * 32
MAIL_FROM = "safety-center@hotline.example.org"
DUE = datetime(2026, 11, 27, 3, 30, tzinfo=UTC)  # 10:30 in Bangkok; 2569 in the Buddhist Era


@dataclass(frozen=True)
class LineTargetFixture:
    group_id: str
    token: str


@dataclass
class World:
    db: Database
    password: str
    users: dict[str, int]
    offices: dict[str, int]
    case_id: int
    reference: str
    number: str  # the reporter's number (E.164)
    transcript: str
    summary: str


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    db = get_database(app)
    with db.session() as session:
        s = seed_console(
            session,
            cipher=FieldCipher(config.data_key),
            recordings_dir=config.recordings_dir,
            recording_key=config.recording_key,
        )
        case = s.cases["routed_50"]
        assert case.callback_number_enc is not None
        number = FieldCipher(config.data_key).decrypt(case.callback_number_enc)
        transcript = session.scalars(
            select(Transcript.text)
            .join(Recording, Recording.id == Transcript.recording_id)
            .where(Recording.case_id == case.id)
        ).one()
        # Staff addresses: op50 reads Thai, op50b English; head50 has an e-mail address only.
        u = s.users
        u["op50"].email, u["op50"].phone = "somchai@school.example", "+66891234567"
        u["op50"].phone_verified_at = datetime.now(UTC)  # SMS goes only to a verified phone
        u["op50b"].email, u["op50b"].locale = "wipa@school.example", "en"
        u["head50"].email = "prasert@school.example"
        return World(
            db=db,
            password=s.password,
            users={k: v.id for k, v in u.items()},
            offices={k: v.id for k, v in s.offices.items()},
            case_id=case.id,
            reference=case.reference,
            number=number,
            transcript=transcript or "",
            summary=s.cases["in_action_50"].summary or "",
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def line() -> Iterator[LineServer]:
    with LineServer({GROUP: LINE_TOKEN}) as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpRelay]:
    with SmtpRelay() as relay:
        yield relay


@pytest.fixture
def twilio() -> Iterator[MediaServer]:
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


def targets(**overrides: object) -> DeliveryTargets:
    values: dict[str, object] = {
        "email": True,
        "sms": True,
        "line": {"50": LineTargetFixture(GROUP, LINE_TOKEN)},
        "public_base_url": PUBLIC_BASE,
    }
    values.update(overrides)
    return DeliveryTargets(**values)  # type: ignore[arg-type]


def queue(
    world: World,
    clock: Clock,
    *,
    dedupe: str = "reminder:1",
    kind: str = "before_due",
    users: Sequence[str] = ("op50", "op50b"),
    channels: Sequence[Channel] = tuple(Channel),
    t: DeliveryTargets | None = None,
    params: dict[str, str] | None = None,
) -> list[int]:
    with world.db.session() as session:
        case = session.get(Case, world.case_id)
        office = session.get(Office, world.offices["50"])
        people = [session.get(User, world.users[name]) for name in users]
        rows = notify(
            session,
            dedupe=dedupe,
            kind=kind,
            case=case,
            users=[p for p in people if p is not None],
            office=office,
            channels=channels,
            params=params or {"reference": world.reference, "due_at": DUE.isoformat()},
            link=f"/console/cases/{world.case_id}",
            now=clock(),
            targets=t or targets(),
        )
        return [n.id for n in rows]


def rows(world: World, channel: Channel | None = None) -> list[Notification]:
    with world.db.session() as session:
        stmt = select(Notification).order_by(Notification.id)
        if channel is not None:
            stmt = stmt.where(Notification.channel == channel)
        return list(session.scalars(stmt))


def attempts(world: World, notification_id: int) -> list[NotificationAttempt]:
    with world.db.session() as session:
        return list(
            session.scalars(
                select(NotificationAttempt)
                .where(NotificationAttempt.notification_id == notification_id)
                .order_by(NotificationAttempt.id)
            )
        )


def outbox(world: World, clock: Clock, senders: dict[Channel, object], **kw: object) -> Outbox:
    settings: dict[str, object] = {"attempts": 3, "backoff_s": 30.0, "worker_id": "test-worker"}
    settings.update(kw)
    return Outbox(world.db, senders, clock=clock, **settings)  # type: ignore[arg-type]


def line_sender(server: LineServer, **kw: float) -> LineSender:
    return LineSender(server.base_url, {"50": LineTargetFixture(GROUP, LINE_TOKEN)}, **kw)


def sms_sender(server: MediaServer, from_: str = SMS_FROM, token_: str = AUTH_TOKEN) -> SmsSender:
    return SmsSender(TwilioRest(server.base_url, ACCOUNT_SID, token_), from_)


# ---- notify ---------------------------------------------------------------------------------------------


def test_notify_writes_one_row_per_channel_and_recipient_in_their_language(
    world: World, clock: Clock
) -> None:
    added = queue(world, clock)
    by = {(n.channel, n.user_id, n.office_id): n for n in rows(world)}
    op50, op50b = world.users["op50"], world.users["op50b"]
    assert set(by) == {
        ("console", op50, None),
        ("console", op50b, None),
        ("email", op50, None),
        ("email", op50b, None),
        ("sms", op50, None),  # op50b has no phone
        ("line", None, world.offices["50"]),
    }
    assert len(added) == 6
    ref = f"{world.reference[:4]}-{world.reference[4:]}"
    thai, english = by[("email", op50, None)], by[("email", op50b, None)]
    assert thai.subject == f"ใกล้ถึงกำหนดโทรกลับ: เรื่อง {ref}"
    assert "27 พ.ย. 2569 10:30" in thai.body  # Bangkok time, Buddhist Era year
    assert english.subject == f"Call-back due soon: case {ref}"
    assert "27 Nov 2026 10:30" in english.body
    assert f"{PUBLIC_BASE}/console/cases/{world.case_id}" in thai.body
    assert by[("line", None, world.offices["50"])].subject.startswith("ใกล้ถึงกำหนดโทรกลับ")  # LINE: Thai
    console = by[("console", op50, None)]
    assert (
        console.status == NotificationStatus.SENT and console.sent_at == clock() and console.read_at is None
    )
    assert console.link == f"/console/cases/{world.case_id}"
    assert thai.status == NotificationStatus.PENDING and thai.next_attempt_at == clock()
    assert all(n.case_id == world.case_id for n in by.values())


def test_every_kind_has_thai_and_english_texts() -> None:
    reference = new_reference()
    params = {"reference": reference, "due_at": DUE.isoformat(), "attempts": "1", "max_attempts": "3"}
    for kind in KINDS:
        for locale in ("th", "en"):
            subject, body = render(kind, locale, params)
            assert display_reference(reference) in subject and "{" not in subject + body
    late = {"reference": reference, "due_at": "2026-11-27T03:30:00Z", "late": "1", "late_minutes": "42"}
    assert "ส่งช้ากว่ากำหนด 42 นาที" in render("at_due", "th", late)[1]
    assert "27 Nov 2026 10:30" in render("at_due", "en", late)[1]
    with pytest.raises(ValueError, match="unknown notification kind"):
        render("no_such_kind", "th", {})


def test_notify_twice_adds_nothing_even_at_once(world: World, clock: Clock) -> None:
    assert len(queue(world, clock)) == 6
    assert queue(world, clock) == []
    results: list[list[int]] = []
    barrier = threading.Barrier(4)

    def racer() -> None:
        barrier.wait()
        results.append(queue(world, clock, dedupe="reminder:2"))

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(len(r) for r in results) == [0, 0, 0, 6]
    assert len(rows(world)) == 12


def test_channels_that_are_not_configured_are_skipped(world: World, clock: Clock) -> None:
    queue(world, clock, t=targets(email=False, sms=False, line={"10": LineTargetFixture(GROUP, "x")}))
    assert {n.channel for n in rows(world)} == {"console"}


def test_installed_targets_reach_notify_through_the_session(world: World, clock: Clock) -> None:
    install_targets(world.db, targets(sms=False, line={}))
    with world.db.session() as session:
        notify(
            session,
            dedupe="installed",
            kind="at_due",
            case=session.get(Case, world.case_id),
            users=[session.get(User, world.users["op50"])],  # type: ignore[list-item]
            office=session.get(Office, world.offices["50"]),
            channels=tuple(Channel),
            params={"reference": world.reference},
            link=None,
            now=clock(),
        )
    assert sorted(n.channel for n in rows(world)) == ["console", "email"]


# ---- e-mail over a real SMTP server -------------------------------------------------------------------


def test_email_reaches_a_real_smtp_server(world: World, clock: Clock, smtp: SmtpRelay) -> None:
    queue(world, clock, channels=[Channel.EMAIL])
    sender = EmailSender(smtp.host, smtp.port, MAIL_FROM)
    assert outbox(world, clock, {Channel.EMAIL: sender}).sweep() == 2
    assert sorted(rcpt for _f, (rcpt,) in smtp.envelopes) == ["somchai@school.example", "wipa@school.example"]
    thai = next(m for m in smtp.received if m["To"] == "somchai@school.example")
    assert isinstance(thai, EmailMessage)
    assert thai["Subject"].startswith("ใกล้ถึงกำหนดโทรกลับ") and thai["From"] == MAIL_FROM
    assert thai.get_content_type() == "text/plain" and thai.get_content_charset() == "utf-8"
    body = thai.get_content()
    assert "เปิดเรื่องในระบบ:" in body and f"{PUBLIC_BASE}/console/cases/{world.case_id}" in body
    sent = rows(world, Channel.EMAIL)
    n = next(r for r in sent if r.user_id == world.users["op50"])
    assert n.status == NotificationStatus.SENT and n.attempts == 1
    # The Message-ID comes from the notification: a re-send after a crash is recognisably the same mail.
    assert thai["Message-ID"] == message_id(n, "hotline.example.org")
    assert thai["Message-ID"].startswith(f"<hotline.n{n.id}.")
    (attempt,) = attempts(world, n.id)
    assert attempt.ok and attempt.provider_ref == thai["Message-ID"] and attempt.duration_ms is not None


def test_a_temporary_smtp_refusal_is_retried_and_a_permanent_one_fails(
    world: World, clock: Clock, smtp: SmtpRelay
) -> None:
    queue(world, clock, channels=[Channel.EMAIL], users=["op50"])
    box = outbox(world, clock, {Channel.EMAIL: EmailSender(smtp.host, smtp.port, MAIL_FROM)})
    smtp.refuse, smtp.refuse_times = "451 4.3.0 Try again later", 1
    assert box.sweep() == 0
    (n,) = rows(world, Channel.EMAIL)
    assert (
        n.status == NotificationStatus.PENDING and n.last_error == "SMTP 451 from relay (recipient refused)"
    )
    assert n.next_attempt_at == clock() + timedelta(seconds=30)
    assert box.sweep() == 0  # not due yet
    clock.advance(seconds=30)
    assert box.sweep() == 1 and len(smtp.received) == 1

    queue(world, clock, dedupe="reminder:9", channels=[Channel.EMAIL], users=["op50"])
    smtp.refuse, smtp.refuse_times = "550 5.1.1 <somchai@school.example>: user unknown", None
    assert box.sweep() == 0
    failed = rows(world, Channel.EMAIL)[-1]
    assert failed.status == NotificationStatus.FAILED and failed.attempts == 1
    assert failed.last_error == "SMTP 550 from relay (recipient refused)"  # no address, no relay words


def test_an_unreachable_relay_is_retried_with_backoff_then_failed(world: World, clock: Clock) -> None:
    queue(world, clock, channels=[Channel.EMAIL], users=["op50"])
    box = outbox(
        world,
        clock,
        {Channel.EMAIL: EmailSender("127.0.0.1", free_port(), MAIL_FROM)},
        attempts=4,
    )
    waits = []
    for _ in range(4):
        assert box.sweep() == 0
        (n,) = rows(world, Channel.EMAIL)
        if n.next_attempt_at is not None:
            waits.append((n.next_attempt_at - clock()).total_seconds())
            clock.now = n.next_attempt_at
    assert waits == [30, 60, 120]  # backoff_s * 2**(attempt-1)
    assert n.status == NotificationStatus.FAILED and n.attempts == 4
    assert n.last_error == "SMTP relay unreachable (ConnectionRefusedError)"
    assert [a.ok for a in attempts(world, n.id)] == [False] * 4


# ---- LINE ---------------------------------------------------------------------------------------------


def test_a_line_push_carries_the_token_the_group_and_a_stable_retry_key(
    world: World, clock: Clock, line: LineServer
) -> None:
    queue(world, clock, channels=[Channel.LINE])
    assert outbox(world, clock, {Channel.LINE: line_sender(line)}).sweep() == 1
    (push,) = line.pushes()
    (n,) = rows(world, Channel.LINE)
    assert push.to == GROUP and len(push.texts) == 1
    assert push.texts[0].startswith(n.body) and push.retry_key == retry_key(n)
    assert n.status == NotificationStatus.SENT
    assert attempts(world, n.id)[0].provider_ref == push.request_id


def test_line_5xx_is_retried_then_delivered_once(world: World, clock: Clock, line: LineServer) -> None:
    queue(world, clock, channels=[Channel.LINE])
    box = outbox(world, clock, {Channel.LINE: line_sender(line)})
    line.inject("http500", times=2)
    for expected in ("LINE 500", "LINE 500"):
        assert box.sweep() == 0
        (n,) = rows(world, Channel.LINE)
        assert n.last_error == expected and n.status == NotificationStatus.PENDING
        assert n.next_attempt_at is not None
        clock.now = n.next_attempt_at
    assert box.sweep() == 1
    (n,) = rows(world, Channel.LINE)
    assert n.status == NotificationStatus.SENT and n.attempts == 3
    assert [(a.ok, a.error) for a in attempts(world, n.id)] == [
        (False, "LINE 500"),
        (False, "LINE 500"),
        (True, None),
    ]
    assert len(line.pushes()) == 1


def test_a_line_timeout_then_409_counts_as_delivered_once(
    world: World, clock: Clock, line: LineServer
) -> None:
    queue(world, clock, channels=[Channel.LINE])
    box = outbox(world, clock, {Channel.LINE: line_sender(line, read_timeout_s=0.3)})
    line.inject("slow", delay_s=1.0)  # LINE accepts the push, after our read timeout
    assert box.sweep() == 0
    (n,) = rows(world, Channel.LINE)
    assert n.last_error == "timeout after 0.3 s"
    for _ in range(50):  # the stand-in accepts it a moment later
        if line.pushes():
            break
        threading.Event().wait(0.05)
    clock.now = n.next_attempt_at  # type: ignore[assignment]
    assert box.sweep() == 1
    (n,) = rows(world, Channel.LINE)
    assert n.status == NotificationStatus.SENT and len(line.pushes()) == 1
    assert attempts(world, n.id)[-1].provider_ref == line.pushes()[0].request_id  # LINE's accepted request


def test_line_401_and_timeouts_end_failed_and_show_on_the_console(
    app: Flask, world: World, clock: Clock, line: LineServer
) -> None:
    queue(world, clock, channels=[Channel.LINE])
    queue(world, clock, dedupe="reminder:2", channels=[Channel.LINE])
    box = outbox(world, clock, {Channel.LINE: line_sender(line, read_timeout_s=0.2)}, attempts=2)
    line.inject("http401", times=1)
    line.inject("slow", times=None, delay_s=0.6)
    box.sweep()
    first, second = rows(world, Channel.LINE)
    assert (
        first.status == NotificationStatus.FAILED and first.last_error == "LINE 401" and first.attempts == 1
    )
    assert second.status == NotificationStatus.PENDING and second.last_error == "timeout after 0.2 s"
    clock.now = second.next_attempt_at  # type: ignore[assignment]
    box.sweep()
    (_first, second) = rows(world, Channel.LINE)
    assert second.status == NotificationStatus.FAILED and second.attempts == 2

    console_clock.install(app, clock)
    head = app.test_client()
    assert login(head, "head50", world.password).status_code == 302
    page = head.get("/console/notifications/failed")
    assert page.status_code == 200
    html = text(page)
    assert "การส่งที่ไม่สำเร็จ" in html and "กลุ่ม LINE" in html
    assert "LINE 401" in html and "timeout after 0.2 s" in html
    assert html.count('id="failed-') == 2 and ("2569" in html or "2570" in html)
    assert re.search(r'aria-label="ส่งไม่สำเร็จ 2 รายการ">2<', html)  # the nav badge
    operator = app.test_client()
    assert login(operator, "op50", world.password).status_code == 302
    assert operator.get("/console/notifications/failed").status_code == 403
    assert "การส่งที่ไม่สำเร็จ" not in text(operator.get("/console/notifications"))
    admin = app.test_client()
    assert login(admin, "admin50", world.password).status_code == 302
    assert text(admin.get("/console/notifications/failed")).count('id="failed-') == 2


def test_a_foreign_head_does_not_see_another_province_s_failures(
    app: Flask, world: World, clock: Clock, line: LineServer
) -> None:
    queue(world, clock, channels=[Channel.LINE])
    line.inject("http401")
    outbox(world, clock, {Channel.LINE: line_sender(line)}).sweep()
    with world.db.session() as session:
        session.add(
            RoleAssignment(user_id=world.users["op10"], office_id=world.offices["10"], role=Role.HEAD)
        )
    other = app.test_client()
    assert login(other, "op10", world.password).status_code == 302
    page = other.get("/console/notifications/failed")
    assert page.status_code == 200 and 'id="failed-' not in text(page)


# ---- SMS through Twilio's Messages API -------------------------------------------------------------------


def test_sms_goes_through_twilio_messages_with_basic_auth(
    world: World, clock: Clock, twilio: MediaServer
) -> None:
    queue(world, clock, channels=[Channel.SMS])
    assert outbox(world, clock, {Channel.SMS: sms_sender(twilio)}).sweep() == 1
    (sms,) = twilio.messages()
    (n,) = rows(world, Channel.SMS)
    assert sms.to == "+66891234567" and sms.from_ == SMS_FROM and sms.messaging_service_sid is None
    assert sms.body == f"{n.subject}\n{PUBLIC_BASE}/console/cases/{world.case_id}"
    assert sms.sid.startswith("SM") and attempts(world, n.id)[0].provider_ref == sms.sid
    assert twilio.requests("POST") == [("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")]


def test_sms_goes_only_to_a_verified_phone(world: World, clock: Clock, twilio: MediaServer) -> None:
    queue(world, clock, channels=[Channel.SMS])  # queued while op50's phone is verified
    with world.db.session() as session:
        user = session.get(User, world.users["op50"])
        assert user is not None
        user.phone_verified_at = None  # as the migration leaves every phone set before verification
    queue(world, clock, dedupe="reminder:2", channels=[Channel.SMS])
    assert len(rows(world, Channel.SMS)) == 1  # nothing new for an unverified phone
    outbox(world, clock, {Channel.SMS: sms_sender(twilio)}).sweep()
    assert twilio.messages() == []
    assert rows(world, Channel.SMS)[0].status == NotificationStatus.FAILED


def test_sms_from_a_messaging_service_and_5xx_retried(
    world: World, clock: Clock, twilio: MediaServer
) -> None:
    queue(world, clock, channels=[Channel.SMS])
    box = outbox(world, clock, {Channel.SMS: sms_sender(twilio, from_=SERVICE_SID)})
    twilio.inject_messages("http503")
    assert box.sweep() == 0
    (n,) = rows(world, Channel.SMS)
    assert n.last_error == "Twilio 503 (code 20500)"
    clock.now = n.next_attempt_at  # type: ignore[assignment]
    assert box.sweep() == 1
    (sms,) = twilio.messages()
    assert sms.messaging_service_sid == SERVICE_SID and sms.from_ is None


def test_twilio_refusals_are_final_and_never_quote_the_number(
    world: World, clock: Clock, twilio: MediaServer
) -> None:
    with world.db.session() as session:
        user = session.get(User, world.users["op50"])
        assert user is not None
        user.phone = "0891234567"  # not E.164: Twilio answers 21211 quoting it
    queue(world, clock, channels=[Channel.SMS])
    queue(world, clock, dedupe="reminder:2", channels=[Channel.SMS])
    outbox(world, clock, {Channel.SMS: sms_sender(twilio)}).sweep()
    bad_number, _ = rows(world, Channel.SMS)
    assert (
        bad_number.status == NotificationStatus.FAILED and bad_number.last_error == "Twilio 400 (code 21211)"
    )
    with world.db.session() as session:
        user = session.get(User, world.users["op50"])
        assert user is not None
        user.phone = "+66891234567"
    queue(world, clock, dedupe="reminder:3", channels=[Channel.SMS])
    outbox(world, clock, {Channel.SMS: sms_sender(twilio, token_="wrong-token")}).sweep()
    assert rows(world, Channel.SMS)[2].last_error == "Twilio 401 (code 20003)"
    assert all(n.status == NotificationStatus.FAILED for n in rows(world, Channel.SMS))
    assert twilio.messages() == []


def test_twilio_rest_errors_are_typed_and_safe(twilio: MediaServer) -> None:
    rest = TwilioRest(twilio.base_url, ACCOUNT_SID, AUTH_TOKEN, read_timeout_s=0.2)
    with pytest.raises(TwilioRestError) as missing:
        rest.send_sms("+66891234567", "", SMS_FROM)
    assert (missing.value.status, missing.value.code, missing.value.retryable) == (400, 21602, False)
    twilio.inject_messages("slow", delay_s=0.6)
    with pytest.raises(TwilioRestError) as slow:
        rest.send_sms("+66891234567", "ทดสอบ", SMS_FROM)
    assert slow.value.reason == "timeout after 0.2 s" and slow.value.retryable


# ---- claims ---------------------------------------------------------------------------------------------


def test_two_outboxes_at_once_deliver_each_row_once(world: World, clock: Clock, line: LineServer) -> None:
    for i in range(24):
        queue(world, clock, dedupe=f"burst:{i}", channels=[Channel.LINE])
    boxes = [
        outbox(world, clock, {Channel.LINE: line_sender(line)}, worker_id=f"w{i}", batch=8) for i in range(2)
    ]
    barrier = threading.Barrier(2)
    delivered = [0, 0]

    def run(i: int) -> None:
        barrier.wait()
        while (done := boxes[i].sweep()) > 0:
            delivered[i] += done

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(delivered) == 24 and all(delivered)  # both worked, nothing twice
    assert len(line.pushes()) == 24 and len({p.retry_key for p in line.pushes()}) == 24
    with world.db.session() as session:
        assert session.scalar(select(func.count(NotificationAttempt.id))) == 24
    assert all(
        n.status == NotificationStatus.SENT and n.claimed_by is None for n in rows(world, Channel.LINE)
    )


def test_a_row_claimed_by_a_dead_worker_comes_back_after_its_lease(
    world: World, clock: Clock, line: LineServer
) -> None:
    queue(world, clock, channels=[Channel.LINE])
    (n,) = rows(world, Channel.LINE)
    with world.db.session() as session:
        row = session.get(Notification, n.id)
        assert row is not None
        row.claimed_by, row.claimed_until = "dead-worker", clock() + timedelta(seconds=120)
    box = outbox(world, clock, {Channel.LINE: line_sender(line)})
    assert box.sweep() == 0
    clock.advance(seconds=121)
    assert box.sweep() == 1


# ---- console --------------------------------------------------------------------------------------------


def test_the_badge_the_list_and_marking_read(app: Flask, world: World, clock: Clock) -> None:
    console_clock.install(app, clock)
    queue(world, clock, channels=[Channel.CONSOLE], users=["op50"])
    queue(world, clock, dedupe="r:2", kind="escalate_head", channels=[Channel.CONSOLE], users=["op50"])
    queue(world, clock, dedupe="r:3", channels=[Channel.CONSOLE], users=["op50b"])
    client = app.test_client()
    assert login(client, "op50", world.password).status_code == 302
    home = text(client.get("/console/"))
    assert re.search(r'aria-label="ยังไม่ได้อ่าน 2 รายการ">2<', home)
    page = client.get("/console/notifications")
    html = text(page)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "การแจ้งเตือน" in html and "เลยกำหนดโทรกลับ" in html and "ใกล้ถึงกำหนดโทรกลับ" in html
    assert "27 พ.ย. 2569 10:30" in html  # the due time in the body, Buddhist Era
    mine = [n for n in rows(world, Channel.CONSOLE) if n.user_id == world.users["op50"]]
    theirs = next(n for n in rows(world, Channel.CONSOLE) if n.user_id == world.users["op50b"])
    assert client.post(f"/console/notifications/{mine[0].id}/read").status_code == 400  # no CSRF token
    assert post(client, f"/console/notifications/{theirs.id}/read").status_code == 404
    assert post(client, f"/console/notifications/{mine[0].id}/read").status_code == 302
    assert re.search(r'aria-label="ยังไม่ได้อ่าน 1 รายการ">1<', text(client.get("/console/")))
    opened = post(client, f"/console/notifications/{mine[1].id}/open")
    assert opened.headers["Location"] == f"/console/cases/{world.case_id}"
    assert "ยังไม่ได้อ่าน" not in text(client.get("/console/"))
    with world.db.session() as session:
        assert session.get(Notification, theirs.id).read_at is None  # type: ignore[union-attr]
    other = app.test_client()
    assert login(other, "op50b", world.password).status_code == 302
    assert 'aria-label="1 unread">1<' in text(other.get("/console/"))  # op50b reads English
    assert post(other, "/console/notifications/read-all").status_code == 302
    assert "unread" not in text(other.get("/console/"))
    assert all(n.read_at == clock() for n in rows(world, Channel.CONSOLE))


def test_the_list_in_english(app: Flask, world: World, clock: Clock) -> None:
    queue(world, clock, channels=[Channel.CONSOLE], users=["op50b"])
    client = app.test_client()
    assert login(client, "op50b", world.password).status_code == 302
    post(client, "/console/locale", locale="en", next="/console/notifications")
    html = text(client.get("/console/notifications"))
    assert "Notifications" in html and "Call-back due soon: case" in html and "Open the case" in html


# ---- nothing personal leaves ------------------------------------------------------------------------------


def test_no_reporter_number_or_words_in_any_message_or_log(
    world: World,
    clock: Clock,
    smtp: SmtpRelay,
    line: LineServer,
    twilio: MediaServer,
    config: Config,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # A careless caller hands the number over as a parameter: it is masked before anything is stored.
    params = {"reference": world.reference, "due_at": DUE.isoformat(), "attempts": world.number}
    for kind in KINDS:
        queue(
            world, clock, dedupe=f"leak:{kind}", kind=kind, users=["op50", "op50b", "head50"], params=params
        )
    cfg = config.with_overrides(
        smtp_host=smtp.host, smtp_port=smtp.port, sms_from=SMS_FROM, line_api_base=line.base_url
    )
    rest = TwilioRest(twilio.base_url, ACCOUNT_SID, AUTH_TOKEN)
    box = build_outbox(cfg, world.db, {"50": LineTargetFixture(GROUP, LINE_TOKEN)}, rest, "w1", clock=clock)
    line.inject("http500")
    twilio.inject_messages("http500")
    while box.sweep():
        pass
    clock.advance(hours=1)
    while box.sweep():
        pass
    assert all(n.status == NotificationStatus.SENT for n in rows(world))
    national = "0" + world.number.removeprefix("+66")
    secrets_ = [world.number, national, world.number.removeprefix("+66"), world.transcript, world.summary]
    secrets_ += [w for w in world.transcript.split() if len(w) > 3]
    staff = ["somchai@school.example", "wipa@school.example", "+66891234567"]
    outgoing = [n.subject + "\n" + n.body + "\n" + (n.last_error or "") for n in rows(world)]
    outgoing += [m.as_string() + m.get_content() for m in smtp.received]  # type: ignore[attr-defined]
    outgoing += ["\n".join(p.texts) for p in line.pushes()]
    outgoing += [m.body for m in twilio.messages()]
    with world.db.session() as session:
        outgoing += [a.error or "" for a in session.scalars(select(NotificationAttempt))]
    ours = "\n".join(
        r.getMessage()
        for r in caplog.records
        if r.name.split(".")[0] in ("cases", "telephony", "infra", "app")
    )
    assert len(smtp.received) == 3 * len(KINDS) and len(line.pushes()) == len(KINDS)
    assert len(twilio.messages()) == len(KINDS)  # op50 alone has a phone
    for secret in secrets_:
        assert secret and all(secret not in blob for blob in outgoing), secret
        assert secret not in ours
    for address in staff:
        assert address not in ours
    assert "[phone …" in rows(world)[0].body or any("[phone …" in b for b in outgoing)
