"""Follow-up by phone: what a caller who keys a case reference may learn (its standing) and add."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from cases import notifications
from cases.callbacks import case_link, holding_office, responsible_users
from cases.models import Case, CaseEvent, CaseStatus, FollowUpTry
from cases.reference import is_valid_reference
from transcription.models import Recording

FOLLOW_UP_EVENT = "follow_up_message"
# Wrong references count toward a number's limit for this long (key 5 must not be a reference oracle).
TRIES_WINDOW = timedelta(hours=1)


class Standing(enum.StrEnum):
    """A case's state in the few plain words anyone who knows its reference may hear; nothing more."""

    RECEIVED = "received"
    BEING_WORKED = "being_worked"
    RESOLVED = "resolved"


_STANDING = {
    CaseStatus.DRAFT: Standing.RECEIVED,
    CaseStatus.ROUTED: Standing.RECEIVED,
    CaseStatus.PROPOSED: Standing.RECEIVED,
    CaseStatus.ASSIGNED: Standing.BEING_WORKED,
    CaseStatus.IN_ACTION: Standing.BEING_WORKED,
    CaseStatus.RESOLVED: Standing.RESOLVED,
}


def standing_of(case: Case) -> Standing:
    return _STANDING[CaseStatus(case.status)]


def find_case(session: Session, reference: str) -> Case | None:
    """The case with this reference, or None (also for anything that is not a well-formed reference)."""
    if not is_valid_reference(reference):
        return None
    return session.scalar(select(Case).where(Case.reference == reference))


def wrong_tries(session: Session, caller_hash: str, now: datetime) -> int:
    """Wrong references the calls of this number (its keyed hash) have keyed this hour.

    Counted across calls, so hanging up and calling again buys no more guesses. Two calls from one
    number at the same moment on PostgreSQL may each get one guess past the limit; no more.
    """
    since = now - TRIES_WINDOW
    used = session.scalar(
        select(func.count())
        .select_from(FollowUpTry)
        .where(FollowUpTry.caller_hash == caller_hash, FollowUpTry.at > since)
    )
    return int(used or 0)


def note_wrong_try(session: Session, caller_hash: str, now: datetime) -> None:
    """Count a reference that named no case; tries older than the window are of no use, so they go."""
    conn = session.connection()
    # Rows another call is deleting are skipped (PostgreSQL): two calls never wait on, or deadlock over,
    # the clean-up; what one leaves, a later try takes.
    expired = (
        select(FollowUpTry.id)
        .where(FollowUpTry.at <= now - TRIES_WINDOW)
        .limit(500)
        .with_for_update(skip_locked=True)
    )
    conn.execute(delete(FollowUpTry).where(FollowUpTry.id.in_(expired)))
    conn.execute(insert(FollowUpTry).values(caller_hash=caller_hash, at=now))


def attach_follow_up_message(
    session: Session, case: Case, recording_sid: str, *, via: str, now: datetime
) -> bool:
    """Add a follow-up caller's recorded message to their case; True if it was added by this call.

    Idempotent: a message already with the case (a retried webhook, the status callback after "send")
    changes nothing and notifies nobody again. The recording row must exist (ingest.note_recording); once
    linked, the worker downloads and transcribes it like the case's first message. The event and the
    notification carry the recording's SID and the reference, never the caller's number or the words.
    """
    rec = session.scalar(select(Recording).where(Recording.recording_sid == recording_sid).with_for_update())
    if rec is None or rec.case_id is not None:
        return False
    rec.case_id = case.id
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            actor_id=None,
            action=FOLLOW_UP_EVENT,
            from_status=None,
            to_status=None,
            detail={"recording_sid": recording_sid, "via": via},
        )
    )
    case.updated_at = now
    office = holding_office(session, case, case.office_id)
    notifications.notify(
        session,
        dedupe=f"follow_up:{recording_sid}",
        kind=FOLLOW_UP_EVENT,
        case=case,
        users=responsible_users(session, office),
        office=office,
        channels=notifications.delivery_targets(session).alerts,  # as every workflow alert
        params={"reference": case.reference},
        link=case_link(case),
        now=now,
    )
    session.flush()
    return True
