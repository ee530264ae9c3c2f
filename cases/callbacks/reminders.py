"""The worker's reminder sweep: every due reminder sent exactly once, as notifications."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cases import notifications
from cases.callbacks.attempts import (
    OPERATOR_KINDS,
    STALE_ATTEMPT,
    channels_for,
    message_params,
    record_outcome,
)
from cases.callbacks.people import (
    case_link,
    heads_up_the_line,
    holding_office,
    operators_for,
    responsible_users,
    someone_above,
)
from cases.callbacks.promise import NOTE_LIMIT, callback_event
from cases.callbacks.settings import CallbackSettings
from cases.models import (
    OPEN_CALLBACK_STATES,
    AttemptOutcome,
    Callback,
    CallbackAttempt,
    Case,
    Office,
    Reminder,
    ReminderKind,
)
from cases.staff import User
from infra.clock import Clock, as_utc, utcnow
from infra.db import Database

log = logging.getLogger(__name__)
MIN_WAIT_S = 0.05
# The message of a reminder that found nobody at its office (cases.notifications.texts).
NO_RECIPIENT = "no_recipient"

# ---- the sweep --------------------------------------------------------------------------------------------


@dataclass
class SweepStats:
    """What the last sweep did (the benchmark reads it)."""

    sent: int = 0
    late: int = 0
    skipped: int = 0  # due rows whose callback had closed: cancelled instead of sent
    escalated: int = 0  # rows nobody at their office could hear: sent at once to the office above
    batches: int = 0
    busy_s: float = 0.0  # time spent in the batches' transactions (not waiting for what falls due)


class ReminderSweep:
    """The worker's reminder sweep: every due, unsent, uncancelled reminder is sent exactly once.

    Idempotent, and safe with several workers and across a kill. Each batch is ONE transaction that
    picks due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL: a second worker skips the rows this one
    holds and, once it commits, sees them sent; SQLite's BEGIN IMMEDIATE serialises the workers), sets
    each row's `sent_at` with a conditional UPDATE (`WHERE sent_at IS NULL`), and inserts its
    notifications (deduplicated on `reminder:<id>`), then commits. The marker and the messages commit
    together: a worker killed before the commit leaves the row due (sent again, once, after restart), a
    commit leaves both. Nothing is leased for later: reminders have no claim columns.

    Batches are short (`batch` rows) so that on SQLite the web app's webhooks, which share the write
    lock, never wait long; with `pause_s`, a run that has more due than one batch lets go of the lock
    that long between batches. SQLite's lock is not fair between processes: a webhook waiting in its
    busy handler sleeps 1, 2, 5, … 25 ms between tries and would miss back-to-back batches entirely
    (a burst of 1,000 held one webhook 0.4 s in the benchmark). With `horizon_s` (the worker passes
    most of its sweep interval) one run also waits for reminders falling due before the next run and
    sends each on time, instead of up to an interval late.
    """

    def __init__(
        self,
        db: Database,
        settings: CallbackSettings,
        *,
        clock: Clock = utcnow,
        batch: int = 100,
        pause_s: float = 0.0,
        horizon_s: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db, self.settings = db, settings
        self.clock, self.batch, self.pause_s, self.horizon_s, self.sleep = (
            clock,
            batch,
            pause_s,
            horizon_s,
            sleep,
        )
        self.stats = SweepStats()

    def sweep(self) -> int:
        """Send what is due (and, with a horizon, what falls due before it ends); the number sent."""
        self.stats = SweepStats()
        self._end_stale_attempts()
        deadline = self.clock() + timedelta(seconds=self.horizon_s)
        while True:
            while self._batch():
                if self.pause_s > 0:
                    self.sleep(self.pause_s)
            if self.horizon_s <= 0:
                break
            upcoming = self._next_due()
            now = self.clock()
            if upcoming is None or upcoming >= deadline:
                break
            # At least a moment: due rows another worker holds (SKIP LOCKED) are not ours to spin on.
            self.sleep(max((upcoming - now).total_seconds(), MIN_WAIT_S))
        if self.stats.sent or self.stats.skipped:
            log.info(
                "reminders: %d sent (%d late), %d of closed callbacks cancelled; %.0f ms in %d batches",
                self.stats.sent,
                self.stats.late,
                self.stats.skipped,
                self.stats.busy_s * 1000,
                self.stats.batches,
            )
        return self.stats.sent

    def _end_stale_attempts(self) -> None:
        """Attempts nobody heard back about (Twilio does not retry a lost status callback) end here as
        OPERATOR_UNREACHABLE, which counts nothing against the reporter: the callback is due again and
        its reminders go on, instead of it staying "calling" for ever."""
        now = self.clock()
        with self.db.reading() as conn:
            stale = list(
                conn.scalars(
                    select(CallbackAttempt.id).where(
                        CallbackAttempt.ended_at.is_(None), CallbackAttempt.started_at < now - STALE_ATTEMPT
                    )
                )
            )
        for attempt_id in stale:
            with self.db.writing() as session:
                attempt = session.get(CallbackAttempt, attempt_id, with_for_update=True)
                if attempt is None or attempt.ended_at is not None:
                    continue
                attempt.note = (attempt.note or "no word from Twilio about this call")[:NOTE_LIMIT]
                record_outcome(session, attempt, AttemptOutcome.OPERATOR_UNREACHABLE, self.settings, now)
                log.warning("call-back attempt %d: no outcome after %s, ended", attempt_id, STALE_ATTEMPT)

    def _next_due(self) -> datetime | None:
        # Read-only: on SQLite it must not take the write lock the webhooks queue for.
        with self.db.reading() as conn:
            value = conn.scalar(
                select(func.min(Reminder.due_at)).where(
                    Reminder.sent_at.is_(None), Reminder.cancelled_at.is_(None)
                )
            )
        return as_utc(value) if value is not None else None

    def _batch(self) -> bool:
        """One transaction over up to `batch` due rows; True when there may be more due now."""
        started = time.perf_counter()
        try:
            return self._transaction()
        finally:
            self.stats.busy_s += time.perf_counter() - started

    def _transaction(self) -> bool:
        with self.db.writing() as session:
            now = self.clock()
            rows = list(
                session.scalars(
                    select(Reminder)
                    .where(
                        Reminder.sent_at.is_(None), Reminder.cancelled_at.is_(None), Reminder.due_at <= now
                    )
                    .order_by(Reminder.due_at, Reminder.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            )
            if not rows:
                return False
            self.stats.batches += 1
            self._send(session, rows, now)
        return len(rows) == self.batch

    def _send(self, session: Session, rows: Sequence[Reminder], now: datetime) -> None:
        callbacks = _by_id(session, Callback, {r.callback_id for r in rows})
        cases = _by_id(session, Case, {r.case_id for r in rows})
        people: dict[tuple[str, int], list[User]] = {}
        late_after = timedelta(seconds=self.settings.late_after_seconds)
        sending = []
        for reminder in rows:
            if callbacks[reminder.callback_id].state in OPEN_CALLBACK_STATES:
                sending.append(reminder)
            else:
                # The callback closed while this row was due: it is cancelled, not sent.
                reminder.cancelled_at = now
                self.stats.skipped += 1
        # The sent marker, set only where it is not yet: the rows this transaction marks are the ones it
        # sends (under the row locks every row qualifies; the condition makes it true by construction).
        marked = set(
            session.scalars(
                update(Reminder)
                .where(Reminder.id.in_([r.id for r in sending]), Reminder.sent_at.is_(None))
                .values(sent_at=now, late=Reminder.due_at < now - late_after)
                .returning(Reminder.id)
                .execution_options(synchronize_session=False)
            )
        )
        for reminder in sending:
            if reminder.id not in marked:
                continue
            callback, case = callbacks[reminder.callback_id], cases[reminder.case_id]
            late = now - reminder.due_at > late_after
            office = holding_office(session, case, reminder.office_id)
            kind = ReminderKind(reminder.kind)
            if kind in OPERATOR_KINDS:
                if callback.assignee_id is not None:
                    users = operators_for(session, callback, office)
                else:
                    key = ("operators", office.id)
                    if key not in people:
                        people[key] = responsible_users(session, office)
                    users = people[key]
            else:
                key = ("heads", office.id)
                if key not in people:
                    people[key] = heads_up_the_line(session, office)
                users = people[key]
            message_kind = str(kind)
            if not users:
                users = self._escalate(session, case, reminder, office, now)
                message_kind = NO_RECIPIENT
            behind = math.floor((now - reminder.due_at).total_seconds() / 60)
            extra = {"late": "1" if late else "", "late_minutes": str(behind)}
            notifications.notify(
                session,
                dedupe=f"reminder:{reminder.id}",
                kind=message_kind,
                case=case,
                users=users,
                office=office,
                channels=channels_for(self.settings, kind),
                params=message_params(case, callback, self.settings, **extra),
                link=case_link(case),
                now=now,
                reminder_id=reminder.id,
            )
            self.stats.sent += 1
            self.stats.late += late
        session.flush()

    def _escalate(
        self, session: Session, case: Case, reminder: Reminder, office: Office, now: datetime
    ) -> list[User]:
        """Nobody at the office to remind: the reminder goes at once to the office above, not nowhere.

        A case at an office whose SC-Operators all left (or that never had one) would otherwise have its
        reminders "sent" to nobody. The escalation is written on the case's timeline.
        """
        found = someone_above(session, office)
        to_office = found[1].code if found is not None else None
        detail = {"kind": str(reminder.kind), "office": office.code, "to_office": to_office}
        callback_event(session, case, None, "reminder_escalated", now, detail)
        self.stats.escalated += 1
        if found is None:
            log.warning("reminder %d of case %d: nobody up the line to remind", reminder.id, case.id)
            return []
        log.info(
            "reminder %d: nobody to remind at office %s, escalated to %s", reminder.id, office.code, to_office
        )
        return found[0]


def _by_id(session: Session, model: Any, ids: Iterable[int]) -> dict[int, Any]:
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(list(ids))))}
