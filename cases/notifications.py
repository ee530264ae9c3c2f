"""The notification outbox: one row per message, channel and recipient, rendered once, delivered with retries.

`notify` writes the rows inside the caller's transaction (insert-or-skip on the dedupe key, so an event
retried or raced gives one message per channel and recipient). Console rows are delivered by being there;
the others wait for the worker's `Outbox.sweep`, which claims due rows with a lease (infra.claims), sends
each outside any transaction, and records every attempt. The sweep is idempotent: a row is written only
while this worker still holds its lease, and a worker that dies leaves its rows to the next one.

Texts carry the case reference, the due time and a console link; never the reporter's number or words.
Whatever a caller passes, phone-number-like runs are masked before a text is stored.
"""

from __future__ import annotations

import hashlib
import logging
import string
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Table, func, insert, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cases.channels import DeliveryError, EmailSender, LineSender, LineTarget, Sender, SmsGateway, SmsSender
from cases.models import (
    CENTRAL_OFFICE_CODE,
    Case,
    Channel,
    Notification,
    NotificationAttempt,
    NotificationStatus,
    Office,
)
from cases.reference import display_reference, is_valid_reference
from cases.staff import Role, RoleAssignment, User
from cases.thai_dates import format_datetime
from infra.claims import claim, release
from infra.clock import Clock, as_utc, utcnow
from infra.config import Config
from infra.db import Database
from infra.logs import mask_phones

log = logging.getLogger(__name__)

TARGETS_KEY = "hotline.delivery_targets"  # in Session.info: see install_targets
DEDUPE_KEY_MAX = 120  # Notification.dedupe_key
SUBJECT_MAX = 200

# Thai first. Placeholders: {reference} (shown as 1234-5678), {due} (the due time in the reader's language,
# from params["due_at"] (ISO 8601) or params["due_local"]), {office} (the office's name in the reader's
# language), {attempts}, {max_attempts}. A missing value shows as "-". The link is not part of the body:
# e-mail and LINE add it below, SMS after the subject, the console as a button.
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "before_due": {
        "th": (
            "ใกล้ถึงกำหนดโทรกลับ: เรื่อง {reference}",
            "เรื่อง {reference} ต้องโทรกลับผู้แจ้งภายใน {due}\nกรุณาโทรกลับผู้แจ้งและบันทึกผลการโทรในระบบ",
        ),
        "en": (
            "Call-back due soon: case {reference}",
            "Case {reference} must be called back by {due}.\n"
            "Please call the reporter back and log the outcome in the console.",
        ),
    },
    "at_due": {
        "th": (
            "ถึงกำหนดโทรกลับแล้ว: เรื่อง {reference}",
            "เรื่อง {reference} ถึงกำหนดโทรกลับผู้แจ้งแล้ว ({due})\nกรุณาโทรกลับผู้แจ้งโดยเร็วและบันทึกผลการโทรในระบบ",
        ),
        "en": (
            "Call-back due now: case {reference}",
            "Case {reference} was due to be called back at {due}.\n"
            "Please call the reporter back now and log the outcome in the console.",
        ),
    },
    "escalate_head": {
        "th": (
            "เลยกำหนดโทรกลับ: เรื่อง {reference}",
            "เรื่อง {reference} ของ{office} ยังไม่ได้โทรกลับผู้แจ้ง ซึ่งครบกำหนดเมื่อ {due}\n"
            "ในฐานะหัวหน้า SC-Operator กรุณาดูแลให้มีการโทรกลับผู้แจ้ง",
        ),
        "en": (
            "Call-back overdue: case {reference}",
            "Case {reference} at {office} has not been called back; it was due at {due}.\n"
            "As head SC-Operator, please see that the reporter is called back.",
        ),
    },
    "escalate_parent": {
        "th": (
            "เลยกำหนดโทรกลับ (แจ้งสำนักงานต้นสังกัด): เรื่อง {reference}",
            "เรื่อง {reference} ของ{office} ยังไม่ได้โทรกลับผู้แจ้ง ซึ่งครบกำหนดเมื่อ {due} "
            "และได้แจ้งหัวหน้า SC-Operator ของสำนักงานนั้นแล้ว\n"
            "กรุณาติดตามให้มีการโทรกลับผู้แจ้ง",
        ),
        "en": (
            "Call-back overdue, escalated to your office: case {reference}",
            "Case {reference} at {office} has still not been called back; it was due at {due}, "
            "and that office's head SC-Operator was alerted.\n"
            "Please follow up so that the reporter is called back.",
        ),
    },
    "callback_retry": {
        "th": (
            "โทรกลับไม่สำเร็จ ต้องโทรอีกครั้ง: เรื่อง {reference}",
            "การโทรกลับผู้แจ้งเรื่อง {reference} ครั้งที่ {attempts} จาก {max_attempts} ครั้งไม่สำเร็จ\n"
            "กำหนดโทรกลับครั้งต่อไปภายใน {due}",
        ),
        "en": (
            "Call-back failed, try again: case {reference}",
            "Attempt {attempts} of {max_attempts} to call back the reporter of case {reference} failed.\n"
            "The next call back is due by {due}.",
        ),
    },
    "callback_gave_up": {
        "th": (
            "ยุติการโทรกลับ: เรื่อง {reference}",
            "โทรกลับผู้แจ้งเรื่อง {reference} ไม่สำเร็จครบ {max_attempts} ครั้งแล้ว "
            "ระบบจึงหยุดแจ้งเตือนการโทรกลับ\n"
            "กรุณาพิจารณาการดำเนินการต่อในระบบ",
        ),
        "en": (
            "Call-back given up: case {reference}",
            "The reporter of case {reference} could not be reached in {max_attempts} attempts; "
            "call-back reminders have stopped.\n"
            "Please decide in the console how to go on.",
        ),
    },
    "follow_up_message": {
        "th": (
            "ผู้แจ้งฝากข้อความเพิ่มเติม: เรื่อง {reference}",
            "ผู้แจ้งเรื่อง {reference} โทรมาฝากข้อความเพิ่มเติม\nฟังข้อความได้ในระบบ",
        ),
        "en": (
            "New follow-up message: case {reference}",
            "The reporter of case {reference} called again and left a further message.\n"
            "Listen to it in the console.",
        ),
    },
}
KINDS = tuple(TEMPLATES)
# Put before the body of a reminder sent late (params["late"]; the worker was down when it fell due).
LATE_NOTE = {
    "th": "(ส่งช้ากว่ากำหนด {late_minutes} นาที เนื่องจากระบบแจ้งเตือนหยุดทำงานชั่วคราว)",
    "en": "(Sent {late_minutes} min late: the reminder service was down when it fell due.)",
}
# Shown before the link in e-mails and LINE messages.
LINK_LABEL = {"th": "เปิดเรื่องในระบบ:", "en": "Open in the console:"}


@dataclass(frozen=True)
class DeliveryTargets:
    """What can deliver here: channels configured, each office's LINE group, where console links point."""

    email: bool = False
    sms: bool = False
    line: Mapping[str, LineTarget] = field(default_factory=dict)  # by office code
    public_base_url: str = ""
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Bangkok"))

    @classmethod
    def from_config(cls, cfg: Config, line: Mapping[str, LineTarget] | None) -> DeliveryTargets:
        return cls(
            email=bool(cfg.smtp_host),
            sms=bool(cfg.sms_from),
            line=dict(line or {}),
            public_base_url=cfg.public_base_url,
            timezone=cfg.timezone,
        )

    def configured(self, channel: Channel) -> bool:
        return {
            Channel.CONSOLE: True,
            Channel.EMAIL: self.email,
            Channel.SMS: self.sms,
            Channel.LINE: bool(self.line),
        }[channel]


CONSOLE_ONLY = DeliveryTargets()


def install_targets(db: Database, targets: DeliveryTargets) -> None:
    """Make every session of `db` carry the delivery targets, so notify() knows what is configured."""
    db.sessions.configure(info={TARGETS_KEY: targets})


def delivery_targets(session: Session) -> DeliveryTargets:
    global _warned
    targets = session.info.get(TARGETS_KEY)
    if isinstance(targets, DeliveryTargets):
        return targets
    if not _warned:
        _warned = True
        log.warning("notify: no delivery targets installed on this database; console notifications only")
    return CONSOLE_ONLY


_warned = False  # the warning above, once per process


# ---- rendering ----------------------------------------------------------------------------------------


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "-"


def render(
    kind: str,
    locale: str,
    params: Mapping[str, str],
    *,
    office: Office | None = None,
    timezone: ZoneInfo | None = None,
) -> tuple[str, str]:
    """Subject and body of a `kind` message in `locale` (Thai unless "en"); phone-like runs masked."""
    if kind not in TEMPLATES:
        raise ValueError(f"unknown notification kind {kind!r}; one of {', '.join(KINDS)}")
    lang = "en" if locale == "en" else "th"
    values = _Values({k: str(v) for k, v in params.items()})
    reference = values.get("reference", "")
    if is_valid_reference(reference):
        values["reference"] = display_reference(reference)
    due_at = params.get("due_at")
    if due_at:
        due = datetime.fromisoformat(due_at)
        values["due"] = format_datetime(as_utc(due), timezone or ZoneInfo("Asia/Bangkok"), lang)
    elif "due_local" in params:
        values["due"] = str(params["due_local"])
    if office is not None:
        values["office"] = office.name_en if lang == "en" else office.name_th
    subject, body = TEMPLATES[kind][lang]
    if params.get("late"):
        body = LATE_NOTE[lang] + "\n" + body
    formatter = string.Formatter()
    subject = mask_phones(formatter.vformat(subject, (), values))[:SUBJECT_MAX]
    body = mask_phones(formatter.vformat(body, (), values))
    return subject, body


def _absolute(link: str | None, base: str) -> str | None:
    if link and link.startswith("/") and not link.startswith("//") and base:
        return base.rstrip("/") + link
    return link


def _dedupe_key(dedupe: str, suffix: str) -> str:
    key = f"{dedupe}:{suffix}"
    if len(key) <= DEDUPE_KEY_MAX:
        return key
    digest = hashlib.sha256(dedupe.encode()).hexdigest()[:32]
    return f"{dedupe[: DEDUPE_KEY_MAX - len(suffix) - 35]}~{digest}:{suffix}"


# ---- writing rows -------------------------------------------------------------------------------------


def notify(
    session: Session,
    *,
    dedupe: str,
    kind: str,
    case: Case | None,
    users: Sequence[User],
    office: Office | None,
    channels: Sequence[Channel],
    params: Mapping[str, str],
    link: str | None,
    now: datetime,
    reminder_id: int | None = None,
    targets: DeliveryTargets | None = None,
) -> list[Notification]:
    """Queue one message per channel and recipient; return the rows this call added (none if all existed).

    Console, e-mail and SMS go to each user (skipping a user without an e-mail address or phone for that
    channel, and inactive accounts); LINE goes once to `office`'s group when it has one. A channel that is
    not configured (no SMTP relay, no SMS sender, no LINE group) is skipped, not failed. `targets` defaults
    to those installed on the database (install_targets). Flushes; the caller commits.
    """
    if kind not in TEMPLATES:
        raise ValueError(f"unknown notification kind {kind!r}; one of {', '.join(KINDS)}")
    t = targets or delivery_targets(session)
    full_link = _absolute(link, t.public_base_url)
    rows: list[dict[str, Any]] = []

    def add(channel: Channel, suffix: str, locale: str, **who: int | None) -> None:
        subject, body = render(kind, locale, params, office=office, timezone=t.timezone)
        if channel != Channel.CONSOLE and full_link:
            body = f"{body}\n\n{LINK_LABEL['en' if locale == 'en' else 'th']} {full_link}"
        console = channel == Channel.CONSOLE
        rows.append(
            {
                "dedupe_key": _dedupe_key(dedupe, suffix),
                "kind": kind,
                "channel": channel,
                "case_id": case.id if case is not None else None,
                "reminder_id": reminder_id,
                "user_id": who.get("user_id"),
                "office_id": who.get("office_id"),
                "subject": subject,
                "body": body,
                "link": (link if console else full_link),
                "status": NotificationStatus.SENT if console else NotificationStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": None if console else now,
                "created_at": now,
                "sent_at": now if console else None,
            }
        )

    people = list({u.id: u for u in users if u.active}.values())
    for channel in dict.fromkeys(Channel(c) for c in channels):
        if not t.configured(channel):
            continue
        if channel == Channel.LINE:
            if office is not None and office.code in t.line:
                add(channel, f"line:o{office.id}", "th", office_id=office.id)
            continue
        for user in people:
            if (channel == Channel.EMAIL and not user.email) or (channel == Channel.SMS and not user.phone):
                continue
            add(channel, f"{channel}:u{user.id}", user.locale, user_id=user.id)
    if not rows:
        return []
    session.flush()
    ids = _insert_or_skip(session, rows)
    if not ids:
        return []
    added = select(Notification).where(Notification.id.in_(ids)).order_by(Notification.id)
    return list(session.scalars(added))


def _insert_or_skip(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING id: concurrent notifies add each row once.

    One statement per dialect, built once and run with the rows as parameters (executemany, which
    SQLAlchemy sends as one multi-row INSERT): its compiled form is cached, where a statement with the
    rows baked into .values() is compiled anew on every call (the reminder sweep calls this a thousand
    times a minute at peak; compiling was two thirds of its time).
    """
    connection = session.connection()
    return list(connection.execute(_insert_statement(connection.dialect.name), rows).scalars())


_INSERT_STATEMENTS: dict[str, Any] = {}


def _insert_statement(dialect: str) -> Any:
    stmt = _INSERT_STATEMENTS.get(dialect)
    if stmt is None:
        table = cast(Table, Notification.__table__)
        if dialect == "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=["dedupe_key"])
        elif dialect == "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=["dedupe_key"])
        else:  # pragma: no cover - the service runs on SQLite or PostgreSQL only
            stmt = insert(table)
        stmt = stmt.returning(table.c.id)
        _INSERT_STATEMENTS[dialect] = stmt
    return stmt


# ---- the console's side ----------------------------------------------------------------------------------


def unread_count(session: Session, user: User) -> int:
    return int(
        session.scalar(
            select(func.count(Notification.id)).where(
                Notification.user_id == user.id,
                Notification.channel == Channel.CONSOLE,
                Notification.read_at.is_(None),
            )
        )
        or 0
    )


def mark_read(session: Session, user: User, now: datetime, notification_id: int | None = None) -> int:
    """Mark one (or every) unread console notification of `user` read; returns how many changed."""
    stmt = update(Notification).where(
        Notification.user_id == user.id,
        Notification.channel == Channel.CONSOLE,
        Notification.read_at.is_(None),
    )
    if notification_id is not None:
        stmt = stmt.where(Notification.id == notification_id)
    result = session.execute(stmt.values(read_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


def my_notifications(session: Session, user: User, *, limit: int = 100) -> list[Notification]:
    """The user's console notifications, newest first."""
    return list(
        session.scalars(
            select(Notification)
            .where(Notification.user_id == user.id, Notification.channel == Channel.CONSOLE)
            .order_by(Notification.created_at.desc(), Notification.id.desc())
            .limit(limit)
        )
    )


OVERSEERS = (Role.HEAD, Role.ADMIN)


def overseen_office_ids(session: Session, user: User, roles: Iterable[Role] = OVERSEERS) -> set[int] | None:
    """Offices the user oversees in one of `roles` (failed deliveries: head or admin), and offices below.

    None means every office (that role at the central office); an empty set, none.
    """
    if not user.active:
        return set()
    mine = set(
        session.scalars(
            select(RoleAssignment.office_id).where(
                RoleAssignment.user_id == user.id, RoleAssignment.role.in_([str(r) for r in roles])
            )
        )
    )
    if not mine:
        return set()
    central = session.scalar(select(Office.id).where(Office.code == CENTRAL_OFFICE_CODE))
    if central in mine:
        return None
    seen, frontier = set(mine), set(mine)
    while frontier:
        frontier = set(session.scalars(select(Office.id).where(Office.parent_id.in_(frontier)))) - seen
        seen |= frontier
    return seen


@dataclass(frozen=True)
class FailedDelivery:
    notification: Notification
    attempts: list[NotificationAttempt]
    recipient: User | None
    office: Office | None
    case: Case | None


def _failed_scope(session: Session, user: User) -> ColumnElement[bool] | None:
    """The condition on Notification for what the user oversees; None when they oversee nothing."""
    offices = overseen_office_ids(session, user)
    if offices is None:
        return true()
    if not offices:
        return None
    staff = select(RoleAssignment.user_id).where(RoleAssignment.office_id.in_(offices))
    cases = select(Case.id).where(Case.office_id.in_(offices))
    return or_(
        Notification.office_id.in_(offices),
        Notification.case_id.in_(cases),
        Notification.user_id.in_(staff),
    )


def failed_count(session: Session, user: User) -> int | None:
    """How many deliveries failed in the offices the user oversees; None when they oversee none."""
    scope = _failed_scope(session, user)
    if scope is None:
        return None
    stmt = select(func.count(Notification.id)).where(Notification.status == NotificationStatus.FAILED, scope)
    return int(session.scalar(stmt) or 0)


def failed_deliveries(session: Session, user: User, *, limit: int = 200) -> list[FailedDelivery] | None:
    """FAILED rows of the offices the user oversees, newest first, with their attempts; None: not theirs."""
    scope = _failed_scope(session, user)
    if scope is None:
        return None
    rows = list(
        session.scalars(
            select(Notification)
            .where(Notification.status == NotificationStatus.FAILED, scope)
            .order_by(Notification.created_at.desc(), Notification.id.desc())
            .limit(limit)
        )
    )
    attempts: dict[int, list[NotificationAttempt]] = {}
    if rows:
        for a in session.scalars(
            select(NotificationAttempt)
            .where(NotificationAttempt.notification_id.in_([n.id for n in rows]))
            .order_by(NotificationAttempt.at, NotificationAttempt.id)
        ):
            attempts.setdefault(a.notification_id, []).append(a)
    return [
        FailedDelivery(
            notification=n,
            attempts=attempts.get(n.id, []),
            recipient=session.get(User, n.user_id) if n.user_id is not None else None,
            office=session.get(Office, n.office_id) if n.office_id is not None else None,
            case=session.get(Case, n.case_id) if n.case_id is not None else None,
        )
        for n in rows
    ]


# ---- delivery -----------------------------------------------------------------------------------------


class Outbox:
    """The worker's delivery sweep over PENDING rows whose channel has a sender here.

    `worker_id` must differ between Outbox instances that sweep at the same time (host:pid is usual).
    """

    def __init__(
        self,
        db: Database,
        senders: Mapping[Channel, Sender],
        *,
        attempts: int,
        backoff_s: float,
        worker_id: str,
        clock: Clock = utcnow,
        batch: int = 50,
        backoff_max_s: float = 3600.0,
        lease_s: float = 120.0,
    ) -> None:
        self.db = db
        self.senders = dict(senders)
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.worker_id = worker_id
        self.clock = clock
        self.batch = batch
        # Covers one delivery (timeouts are 5 + 10 s); renewed as each row's turn comes.
        self.lease = timedelta(seconds=lease_s)

    def sweep(self) -> int:
        """Deliver every due row this worker can send; returns how many were delivered."""
        if not self.senders:
            return 0
        now = self.clock()
        with self.db.writing() as session:
            ids = claim(
                session,
                Notification,
                Notification.status == NotificationStatus.PENDING,
                Notification.channel.in_([str(c) for c in self.senders]),
                or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now),
                now=now,
                lease=self.lease,
                worker_id=self.worker_id,
                limit=self.batch,
                order_by=(Notification.next_attempt_at, Notification.id),
            )
        return sum(1 for nid in ids if self._deliver(nid))

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.backoff_s * 2 ** (attempts - 1), self.backoff_max_s))

    def _deliver(self, nid: int) -> bool:
        with self.db.writing() as session:
            # Renew the lease only if it is still ours: a row that waited past its lease in this batch
            # may have been claimed by another worker meanwhile, and is then theirs.
            renewed = session.execute(
                update(Notification)
                .where(
                    Notification.id == nid,
                    Notification.claimed_by == self.worker_id,
                    Notification.status == NotificationStatus.PENDING,
                )
                .values(claimed_until=self.clock() + self.lease)
            )
            if not getattr(renewed, "rowcount", 0):
                return False
            n = session.get(Notification, nid)
            if n is None:
                return False
            recipient = _recipient(session, n)
            channel = Channel(n.channel)
        sender = self.senders.get(channel)
        started = time.monotonic()
        ref: str | None = None
        error: str | None = None
        retryable = True
        if sender is None:
            error, retryable = f"no {channel} sender on this worker", True
        elif recipient is None:
            error, retryable = _missing_recipient(channel), False
        else:
            try:
                ref = sender.send(n, recipient)
            except DeliveryError as exc:
                error, retryable = exc.reason, exc.retryable
            except Exception as exc:  # a sender's bug must not stop the sweep; its message may hold data
                error = f"{channel} sender failed ({type(exc).__name__})"
                log.error("notification %d: %s", nid, error)
        duration_ms = int((time.monotonic() - started) * 1000)
        return self._record(nid, ref, error, retryable, duration_ms)

    def _record(
        self, nid: int, ref: str | None, error: str | None, retryable: bool, duration_ms: int
    ) -> bool:
        now = self.clock()
        with self.db.writing() as session:
            n = session.get(Notification, nid)
            if n is None or n.status != NotificationStatus.PENDING:
                return False
            n.attempts += 1
            session.add(
                NotificationAttempt(
                    notification_id=nid,
                    at=now,
                    ok=error is None,
                    error=error,
                    duration_ms=duration_ms,
                    provider_ref=(ref or None) and str(ref)[:120],
                )
            )
            what = f"notification {nid} ({n.channel}, {n.kind})"
            if error is None:
                n.status, n.sent_at = NotificationStatus.SENT, now
                n.last_error = n.next_attempt_at = None
                log.info("%s sent on attempt %d", what, n.attempts)
            elif not retryable or n.attempts >= self.attempts:
                n.status, n.last_error, n.next_attempt_at = NotificationStatus.FAILED, error[:300], None
                log.error("%s failed after %d attempt(s): %s", what, n.attempts, error)
            else:
                n.last_error = error[:300]
                n.next_attempt_at = now + self.backoff(n.attempts)
                log.warning("%s attempt %d failed (%s); will retry", what, n.attempts, error)
            release(session, Notification, nid, self.worker_id)
            return error is None


def _recipient(session: Session, n: Notification) -> str | None:
    """Where to send, read now (an address corrected since notify is used); None when there is none."""
    if n.channel == Channel.LINE:
        office = session.get(Office, n.office_id) if n.office_id is not None else None
        return office.code if office is not None else None
    user = session.get(User, n.user_id) if n.user_id is not None else None
    if user is None or not user.active:
        return None
    return user.email if n.channel == Channel.EMAIL else user.phone if n.channel == Channel.SMS else None


def _missing_recipient(channel: Channel) -> str:
    return {
        Channel.EMAIL: "the recipient has no e-mail address (or no active account)",
        Channel.SMS: "the recipient has no phone number (or no active account)",
        Channel.LINE: "the office is gone",
    }.get(channel, "no recipient")


# ---- wiring -------------------------------------------------------------------------------------------


def build_outbox(
    cfg: Config,
    db: Database,
    line: Mapping[str, LineTarget] | None,
    sms: SmsGateway | None,
    worker_id: str,
    *,
    clock: Clock = utcnow,
) -> Outbox:
    """The worker's outbox with a sender for each configured channel; installs the targets on `db` too."""
    install_targets(db, DeliveryTargets.from_config(cfg, line))
    senders: dict[Channel, Sender] = {}
    if cfg.smtp_host:
        senders[Channel.EMAIL] = EmailSender(
            cfg.smtp_host,
            cfg.smtp_port,
            cfg.mail_from,
            user=cfg.smtp_user,
            password=cfg.smtp_password,
            starttls=cfg.smtp_starttls,
        )
    if sms is not None and cfg.sms_from:
        senders[Channel.SMS] = SmsSender(sms, cfg.sms_from)
    if line:
        senders[Channel.LINE] = LineSender(cfg.line_api_base, line)
    return Outbox(
        db,
        senders,
        attempts=cfg.notify_attempts,
        backoff_s=cfg.notify_backoff_s,
        worker_id=worker_id,
        clock=clock,
    )
