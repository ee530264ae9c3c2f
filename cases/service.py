"""Case service functions: each takes the session, flushes, and leaves the commit to its caller."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cases import search_index
from cases.callbacks import open_callback
from cases.callbacks.settings import CallbackSettings
from cases.models import Call, CallbackChoice, Case, HazardGroup
from cases.offices import office_for_province
from cases.reference import new_reference
from infra.clock import Clock, utcnow
from infra.crypto import FieldCipher, mask_phone
from transcription.models import Recording

REFERENCE_ATTEMPTS = 20


class ReferenceExhausted(RuntimeError):
    """No free case reference was found (the reference space is nearly full)."""


@dataclass(frozen=True)
class DraftReport:
    """What the IVR collected, in domain terms."""

    call: Call
    category: HazardGroup
    language: str
    province_code: str | None
    callback: CallbackChoice
    callback_number: str | None  # E.164, only for CallbackChoice.OTHER
    recording_sid: str | None
    opened_by: str = "caller"  # caller | hangup | rescue | callback_only
    # The caller pressed "no call back": their number is then removed from the call as well.
    anonymous: bool = False


def open_draft_case(
    session: Session,
    report: DraftReport,
    *,
    cipher: FieldCipher,
    clock: Clock = utcnow,
    callbacks: CallbackSettings | None = None,
) -> Case:
    """Open the draft case for a call, once: a second call for the same call returns the first case.

    With `callbacks`, a case that asks to be called back gets its callback, due by the SLA of its
    hazard group, and the reminders of that due time.
    """
    call = report.call
    existing = session.scalar(select(Case).where(Case.call_id == call.id))
    if existing is not None:
        _link_recording(session, existing, report.recording_sid)
        return existing

    office = office_for_province(session, report.province_code)
    number_enc: str | None = None
    number_masked: str | None = None
    if report.callback == CallbackChoice.OTHER and report.callback_number:
        number_enc, number_masked = cipher.encrypt(report.callback_number), mask_phone(report.callback_number)
    elif report.callback == CallbackChoice.CALLER and call.caller_number_enc:
        number_enc, number_masked = call.caller_number_enc, call.caller_number_masked
    # The search hashes need the numbers in the clear once, here where they are stored with the case.
    # A number no key opens is only left unsearchable: the report itself must never be lost for it.
    caller_number = search_index.decrypted(cipher, call.caller_number_enc)
    callback_number = report.callback_number if report.callback == CallbackChoice.OTHER else caller_number
    if report.anonymous:
        # Anonymous: the caller's number is kept neither with the case nor with the call.
        call.caller_number_enc = None
        call.caller_number_masked = None
    callback = (
        report.callback if report.callback == CallbackChoice.NONE or number_enc else CallbackChoice.NONE
    )

    now = clock()
    for _ in range(REFERENCE_ATTEMPTS):
        reference = new_reference()
        if session.scalar(select(Case.id).where(Case.reference == reference)) is not None:
            continue
        case = Case(
            reference=reference,
            category=report.category,
            ivr_category=report.category,
            language=report.language,
            province_code=report.province_code if office.province_code else None,
            office_id=office.id,
            callback_choice=callback,
            callback_number_enc=number_enc,
            callback_number_masked=number_masked,
            call_id=call.id,
            opened_by=report.opened_by,
            created_at=now,
            updated_at=now,
        )
        search_index.set_number_hashes(
            case, cipher, callback_number if number_enc else None, None if report.anonymous else caller_number
        )
        try:
            with session.begin_nested():
                session.add(case)
                session.flush()
        except IntegrityError:
            # Another process took this reference between our check and our insert: draw again.
            continue
        _link_recording(session, case, report.recording_sid)
        if callbacks is not None:
            open_callback(session, case, callbacks, now)
        return case
    raise ReferenceExhausted(f"no free case reference after {REFERENCE_ATTEMPTS} draws")


def _link_recording(session: Session, case: Case, recording_sid: str | None) -> None:
    if recording_sid:
        session.execute(
            update(Recording)
            .where(Recording.recording_sid == recording_sid, Recording.case_id.is_(None))
            .values(case_id=case.id)
        )
        session.flush()
        rec_id = session.scalar(select(Recording.id).where(Recording.recording_sid == recording_sid))
        if rec_id is not None:
            search_index.index_recording(session, rec_id)
