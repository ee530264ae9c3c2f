"""The worker's reconcile sweep: every message Twilio holds ends up in a case, even if no webhook said so.

Webhooks can be lost: Twilio does not retry status callbacks, a <Record> action can time out, our
server can be down. Three passes mend it, each idempotent (they call the same settle() as the webhooks):

1. Our own rows: a recording with audio but no case, whose call has ended (or whose call we never saw),
   is settled into its call's case, or opens one.
2. Twilio's recordings of the last day: one we never heard of is noted (and queued for download) and
   settled into its call's case; its call, if Twilio says it is over, is ended.
3. Calls that never got their status callback and have been quiet a while: Twilio is asked how they
   ended, and what they left is settled at once instead of after the two-hour stale-call sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cases.models import Call
from infra.db import Database
from infra.sweeps import SweepReport
from telephony import endings, service
from telephony.callstate import Telephony, find_call
from telephony.rest import TwilioRecording, TwilioRestError
from transcription import ingest
from transcription.models import Recording

log = logging.getLogger(__name__)
FINAL = frozenset(service.CALL_ENDED)


class TwilioLedger(Protocol):
    """What the sweep reads at Twilio (telephony.rest.TwilioRest)."""

    def recordings_since(self, day: date, *, call_sid: str | None = None) -> Iterator[TwilioRecording]: ...

    def call_status(self, call_sid: str) -> str | None: ...


@dataclass(frozen=True)
class ReconcileSettings:
    lookback: timedelta = timedelta(hours=24)  # how far back Twilio's recordings are read
    # A message without a case this long is past any webhook still on its way.
    grace: timedelta = timedelta(seconds=60)
    quiet: timedelta = timedelta(minutes=10)  # a call silent this long is asked about at Twilio
    batch: int = 100


class Reconciler:
    def __init__(
        self, db: Database, tel: Telephony, twilio: TwilioLedger | None, settings: ReconcileSettings
    ) -> None:
        self.db, self.tel, self.twilio, self.settings = db, tel, twilio, settings

    def sweep(self, report: SweepReport | None = None) -> int:
        """Run the three passes; returns how many messages or calls were mended.

        Twilio out of reach is a fault (`worker --once` prints it); our own pass has run all the same.
        """
        report = report if report is not None else SweepReport()
        report.expect("mended")
        mended = self.our_loose_messages()
        if self.twilio is not None:
            try:
                mended += self.twilio_recordings() + self.quiet_calls()
            except TwilioRestError as exc:
                log.warning("reconcile: Twilio not readable now (%s); will try again", exc)
                report.fault("twilio unread", f"Twilio's recordings and calls not read: {exc}")
        report.count("mended", mended)
        return mended

    # ---- 1. our own rows ---------------------------------------------------------------------------

    def our_loose_messages(self) -> int:
        now = self.tel.clock()
        with self.db.reading() as conn:
            call_sids = list(
                conn.execute(
                    select(Recording.call_sid)
                    .where(
                        Recording.case_id.is_(None),
                        Recording.status != "absent",
                        (Recording.duration_s.is_(None)) | (Recording.duration_s > 0),
                        Recording.created_at < now - self.settings.grace,
                        Recording.created_at > now - self.settings.lookback * 7,
                    )
                    .distinct()
                    .limit(self.settings.batch)
                ).scalars()
            )
        mended = 0
        for call_sid in call_sids:
            with self.db.writing() as session:
                mended += self._settle(session, call_sid, twilio_status=None)
        return mended

    # ---- 2. Twilio's recordings --------------------------------------------------------------------

    def twilio_recordings(self) -> int:
        assert self.twilio is not None
        since = (self.tel.clock() - self.settings.lookback).date()
        # Still being made, or nothing was said: nothing to keep (yet).
        held = [r for r in self.twilio.recordings_since(since) if r.status == "completed" and r.duration_s]
        homed: set[str] = set()
        with self.db.reading() as conn:
            for start in range(0, len(held), 500):
                sids = [r.sid for r in held[start : start + 500]]
                homed.update(
                    conn.execute(
                        select(Recording.recording_sid).where(
                            Recording.recording_sid.in_(sids), Recording.case_id.is_not(None)
                        )
                    ).scalars()
                )
        mended = 0
        for item in held:
            if item.sid in homed:
                continue
            log.warning("reconcile: recording %s of call %s has no case", item.sid, item.call_sid)
            status = self.twilio.call_status(item.call_sid)
            with self.db.writing() as session:
                # As if its status callback had come (a late real one is then a repeat, changing nothing).
                ingest.apply_status_callback(
                    session,
                    recording_sid=item.sid,
                    call_sid=item.call_sid,
                    status="completed",
                    media_url=item.media_url,
                    duration_s=item.duration_s,
                    language=None,
                    now=self.tel.clock(),
                )
                mended += self._settle(session, item.call_sid, twilio_status=status)
        return mended

    # ---- 3. calls that never said goodbye ----------------------------------------------------------

    def quiet_calls(self) -> int:
        assert self.twilio is not None
        now = self.tel.clock()
        with self.db.reading() as conn:
            call_sids = list(
                conn.execute(
                    select(Call.call_sid)
                    .where(
                        Call.ended_at.is_(None),
                        Call.updated_at < now - self.settings.quiet,
                        Call.created_at > now - self.settings.lookback,
                    )
                    .limit(self.settings.batch)
                ).scalars()
            )
        mended = 0
        for call_sid in call_sids:
            status = self.twilio.call_status(call_sid)
            if status is None or status in FINAL:
                with self.db.writing() as session:
                    mended += self._settle(session, call_sid, twilio_status=status or "completed")
        return mended

    # ---- the one way a call is mended ----------------------------------------------------------------

    def _settle(self, session: Session, call_sid: str, *, twilio_status: str | None) -> int:
        """End the call if Twilio says it is over, then settle what it left; 1 if it was settled."""
        call = find_call(session, call_sid)
        if call is None:
            # A message whose call never reached us (its first webhook failed): it opens a case of its own.
            call = Call(
                call_sid=call_sid,
                status=twilio_status or "ended-unreported",
                language=self.tel.flow.default_language,
                ended_at=self.tel.clock(),
            )
            try:
                with session.begin_nested():  # a savepoint: losing the race below undoes only this
                    session.add(call)
            except IntegrityError:
                # Another worker's reconcile (PostgreSQL lets two write at once) made this call a moment
                # ago and settles it in its own transaction; nothing is left for this one to do.
                log.info("reconcile: call %s was settled by another worker", call_sid)
                return 0
        elif call.ended_at is None:
            if twilio_status not in FINAL:
                return 0  # the caller may still be on the line: the call's own end settles it
            service.close_unfinished_call(session, self.tel, call, twilio_status)
            return 1
        endings.settle(session, self.tel, call, opened_by="reconcile")
        return 1
