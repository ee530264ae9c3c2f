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

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cases.models import (
    Case,
    Channel,
    Notification,
    NotificationAttempt,
    NotificationStatus,
    Office,
)
from cases.notifications.channels import (
    DeliveryError,
    EmailSender,
    LineSender,
    LineTarget,
    Sender,
    SmsGateway,
    SmsSender,
)
from cases.notifications.texts import (
    KINDS,
    LINK_LABEL,
    TEMPLATES,
    absolute_link,
    dedupe_key,
    render,
)
from cases.staff import User
from infra.claims import claim, release
from infra.clock import Clock, utcnow
from infra.config import Config
from infra.db import Database

log = logging.getLogger(__name__)
TARGETS_KEY = "hotline.delivery_targets"  # in Session.info: see install_targets
# Workflow alerts (cases.notifications.alerts) unless the callbacks file's `alerts` says otherwise: SMS is
# left out by default, as a text message for every routed case would drown the ones that matter.
ALERT_CHANNELS = (Channel.CONSOLE, Channel.EMAIL, Channel.LINE)


@dataclass(frozen=True)
class DeliveryTargets:
    """What can deliver here: channels configured, each office's LINE group, where console links point."""

    email: bool = False
    sms: bool = False
    line: Mapping[str, LineTarget] = field(default_factory=dict)  # by office code
    public_base_url: str = ""
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Bangkok"))
    alerts: tuple[Channel, ...] = ALERT_CHANNELS  # the channels of workflow alerts

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        line: Mapping[str, LineTarget] | None,
        alerts: Sequence[Channel] = ALERT_CHANNELS,
    ) -> DeliveryTargets:
        return cls(
            email=bool(cfg.smtp_host),
            sms=bool(cfg.sms_from),
            line=dict(line or {}),
            public_base_url=cfg.public_base_url,
            timezone=cfg.timezone,
            alerts=tuple(alerts),
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
    full_link = absolute_link(link, t.public_base_url)
    rows: list[dict[str, Any]] = []

    def add(channel: Channel, suffix: str, locale: str, **who: int | None) -> None:
        subject, body = render(kind, locale, params, office=office, timezone=t.timezone)
        if channel != Channel.CONSOLE and full_link:
            body = f"{body}\n\n{LINK_LABEL['en' if locale == 'en' else 'th']} {full_link}"
        console = channel == Channel.CONSOLE
        rows.append(
            {
                "dedupe_key": dedupe_key(dedupe, suffix),
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
            # SMS only to a verified phone (cases.phones): never to a number nobody proved is theirs.
            if (channel == Channel.EMAIL and not user.email) or (
                channel == Channel.SMS and not _sms_to(user)
            ):
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
    return user.email if n.channel == Channel.EMAIL else _sms_to(user) if n.channel == Channel.SMS else None


def _sms_to(user: User) -> str | None:
    """The user's phone once verified (the same rule as cases.phones.verified_phone, without its import)."""
    return user.phone if user.phone and user.phone_verified_at is not None else None


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
    alerts: Sequence[Channel] = ALERT_CHANNELS,
) -> Outbox:
    """The worker's outbox with a sender for each configured channel; installs the targets on `db` too."""
    install_targets(db, DeliveryTargets.from_config(cfg, line, alerts))
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
