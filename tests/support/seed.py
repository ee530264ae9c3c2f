"""Seed data for tests, screenshots and benchmarks: staff in their roles, committees, cases in every state.

`seed_console` builds a small, fully linked world through the real service functions (so every case
has the events its state implies); `seed_bulk_cases` adds many plain cases quickly for load tests.
Both flush and leave the commit to the caller.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import secrets
import struct
import wave
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from cases import workflow
from cases.accounts import hash_password
from cases.models import (
    CENTRAL_OFFICE_CODE,
    Call,
    CallbackChoice,
    CallEvent,
    Case,
    CaseEvent,
    CaseStatus,
    HazardGroup,
    Notification,
    Office,
)
from cases.notifications.alerts import ALERT_KINDS
from cases.reference import damm_digit
from cases.service import DraftReport, open_draft_case
from cases.staff import Committee, CommitteeMember, Role, RoleAssignment, User
from infra.clock import Clock, utcnow
from infra.crypto import FieldCipher, mask_phone
from infra.sealed import RecordingCipher
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus

SEED_PASSWORD = "seed-password-0123"
PROVINCE = "50"  # Chiang Mai: the office most seeded staff work at
OTHER_PROVINCE = "10"  # Bangkok: a foreign office to most of them
DISTRICT = "5001"  # Mueang Chiang Mai, under PROVINCE

# username: (display name, role, office code)
STAFF: dict[str, tuple[str, Role, str]] = {
    "agent": ("สมหญิง รับสาย", Role.AGENT, CENTRAL_OFFICE_CODE),
    "op50": ("สมชาย ใจดี", Role.OPERATOR, PROVINCE),
    "op50b": ("วิภา ตั้งใจ", Role.OPERATOR, PROVINCE),
    "head50": ("ประเสริฐ หัวหน้า", Role.HEAD, PROVINCE),
    "action50": ("มานะ ลงมือ", Role.ACTION, PROVINCE),
    "admin50": ("อรุณี ดูแล", Role.ADMIN, PROVINCE),
    "op10": ("กมล กรุงเทพ", Role.OPERATOR, OTHER_PROVINCE),
    "op5001": ("ชูชาติ อำเภอเมือง", Role.OPERATOR, DISTRICT),
}

SAMPLE_WORDS: list[dict[str, Any]] = [
    {"word": "มี", "start": 0.3, "end": 0.5, "conf": 0.97},
    {"word": "นักเรียน", "start": 0.5, "end": 1.0, "conf": 0.91},
    {"word": "ถูก", "start": 1.0, "end": 1.2, "conf": 0.88},
    {"word": "รังแก", "start": 1.2, "end": 1.7, "conf": 0.42},
    {"word": "ที่", "start": 1.7, "end": 1.8, "conf": 0.95},
    {"word": "โรงเรียน", "start": 1.8, "end": 2.3, "conf": 0.93},
    {"word": "ทุก", "start": 2.3, "end": 2.5, "conf": 0.55},
    {"word": "วัน", "start": 2.5, "end": 2.8, "conf": 0.9},
]


@dataclass
class Seeded:
    password: str
    users: dict[str, User] = field(default_factory=dict)
    offices: dict[str, Office] = field(default_factory=dict)
    committees: dict[str, Committee] = field(default_factory=dict)
    cases: dict[str, Case] = field(default_factory=dict)
    recordings: dict[str, Recording] = field(default_factory=dict)


def tone_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A short 16-bit mono WAV (a quiet 440 Hz tone) standing in for a caller's message."""
    frames = b"".join(
        struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def _office(session: Session, code: str) -> Office:
    office = session.scalar(select(Office).where(Office.code == code))
    if office is None:
        raise LookupError(f"office {code} is not loaded: run `flask --app app offices load` first")
    return office


def seed_console(
    session: Session,
    *,
    cipher: FieldCipher,
    recordings_dir: Path | None = None,
    recording_key: str = "",
    password: str = SEED_PASSWORD,
    clock: Clock = utcnow,
) -> Seeded:
    """Staff at central, Chiang Mai (50), Bangkok (10) and Mueang Chiang Mai (5001), and nine cases.

    Cases (by key): draft_central (no province, callback to the caller), draft_50 (anonymous),
    routed_50, proposed_50 (op50's proposal to action50 waits for head50), assigned_50 (to the
    committee, not yet acknowledged), in_action_50 (action50 acknowledged, one action), resolved_50,
    routed_10, district_5001 (forwarded by Chiang Mai to its district). Recordings (with a transcript
    that has low-confidence words) for draft_central, routed_50, in_action_50, routed_10 and
    district_5001, stored under `recordings_dir` when given (sealed with `recording_key`, as the worker
    stores them).
    """
    seeded = Seeded(password=password)
    for code in (CENTRAL_OFFICE_CODE, PROVINCE, OTHER_PROVINCE, DISTRICT):
        seeded.offices[code] = _office(session, code)
    password_hash = hash_password(password)  # one hash for all: seeding stays fast
    base = clock() - timedelta(days=3)
    for username, (name, role, code) in STAFF.items():
        user = User(
            username=username,
            display_name=name,
            password_hash=password_hash,
            active=True,
            locale="th",
            failed_logins=0,
            session_token=secrets.token_hex(32),
            created_at=base,
        )
        session.add(user)
        session.flush()
        session.add(RoleAssignment(user_id=user.id, office_id=seeded.offices[code].id, role=role))
        seeded.users[username] = user
    session.flush()
    u = seeded.users
    committee = Committee(office_id=seeded.offices[PROVINCE].id, name="คณะทำงาน SC-Action จังหวัดเชียงใหม่")
    session.add(committee)
    session.flush()
    for member in ("action50", "op50b"):
        session.add(CommitteeMember(committee_id=committee.id, user_id=u[member].id))
    seeded.committees["cm50"] = committee
    session.flush()

    tick = iter(range(10_000))

    def at() -> datetime:
        return base + timedelta(minutes=7 * next(tick))

    def new_case(
        key: str, province: str | None, callback: CallbackChoice, category: HazardGroup, audio: bool
    ) -> Case:
        number = "+6681" + "".join(str(secrets.randbelow(10)) for _ in range(7))
        when = at()
        call = Call(
            call_sid="CA" + secrets.token_hex(16),
            status="completed",
            caller_number_enc=cipher.encrypt(number),
            caller_number_masked=mask_phone(number),
            language="th",
            ivr_state={},
            created_at=when,
            updated_at=when,
        )
        session.add(call)
        session.flush()
        rec_sid = "RE" + secrets.token_hex(16) if audio else None
        path = [
            ("welcome", "call_started", {}),
            ("main_menu", "key", {"key": str(list(HazardGroup).index(category) + 1)}),
            ("main_menu", "set", {"category": str(category)}),
            ("ask_province", "entered", {"via": "keys", "value": province or ""}),
            ("callback_menu", "set", {"callback": str(callback)}),
            ("record_message", "recorded", {"sid": rec_sid or "", "duration_s": "3"}),
            ("submit", "submit", {}),
        ]
        for node, kind, detail in path:
            session.add(CallEvent(call_id=call.id, at=when, node=node, kind=kind, detail=detail))
        if rec_sid:
            stored, wav = None, tone_wav()
            if recordings_dir is not None:
                recordings_dir.mkdir(parents=True, exist_ok=True)
                stored = recordings_dir / f"{rec_sid}.wav.sealed"
                stored.write_bytes(RecordingCipher(recording_key).seal_bytes(wav))
            rec = Recording(
                recording_sid=rec_sid,
                call_sid=call.call_sid,
                language="th",
                media_url=f"https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/{rec_sid}",
                duration_s=1,
                status="completed",
                storage_status=StorageStatus.STORED if stored else StorageStatus.PENDING,
                stored_path=str(stored) if stored else None,
                # The audio's, as the worker keeps them (the file on disk is sealed).
                size_bytes=len(wav) if stored else None,
                sha256=hashlib.sha256(wav).hexdigest() if stored else None,
                audio_duration_s=1.0,
                created_at=when,
                updated_at=when,
            )
            session.add(rec)
            session.flush()
            session.add(
                Transcript(
                    recording_id=rec.id,
                    status=TranscriptStatus.DONE,
                    language="th",
                    text=" ".join(w["word"] for w in SAMPLE_WORDS),
                    words=SAMPLE_WORDS,
                    mean_confidence=0.81,
                    engine="vosk",
                    model_id="seed",
                    created_at=when,
                    finished_at=when,
                )
            )
            seeded.recordings[key] = rec
        report = DraftReport(
            call=call,
            category=category,
            language="th",
            province_code=province,
            callback=callback,
            callback_number=number if callback == CallbackChoice.OTHER else None,
            recording_sid=rec_sid,
        )
        case = open_draft_case(session, report, cipher=cipher, clock=lambda: when)
        seeded.cases[key] = case
        return case

    cm = seeded.offices
    new_case("draft_central", None, CallbackChoice.CALLER, HazardGroup.VIOLENCE, True)
    new_case("draft_50", PROVINCE, CallbackChoice.NONE, HazardGroup.ACCIDENT, False)
    for key, callback, category, audio in (
        ("routed_50", CallbackChoice.OTHER, HazardGroup.VIOLENCE, True),
        ("proposed_50", CallbackChoice.CALLER, HazardGroup.RIGHTS_VIOLATION, False),
        ("assigned_50", CallbackChoice.CALLER, HazardGroup.HEALTH_HARM, False),
        ("in_action_50", CallbackChoice.CALLER, HazardGroup.VIOLENCE, True),
        ("resolved_50", CallbackChoice.NONE, HazardGroup.ACCIDENT, False),
        ("district_5001", CallbackChoice.CALLER, HazardGroup.VIOLENCE, True),
    ):
        case = new_case(key, PROVINCE, callback, category, audio)
        workflow.route_case(session, case, u["agent"], cm[PROVINCE], clock=at)
    routed_10 = new_case("routed_10", OTHER_PROVINCE, CallbackChoice.CALLER, HazardGroup.ACCIDENT, True)
    workflow.route_case(session, routed_10, u["agent"], cm[OTHER_PROVINCE], clock=at)

    c = seeded.cases
    summary = "นักเรียนชั้น ม.2 ถูกรุ่นพี่รังแกทุกวันหลังเลิกเรียน ผู้แจ้งขอให้ติดต่อกลับ"
    for key in ("proposed_50", "assigned_50", "in_action_50", "resolved_50", "district_5001"):
        workflow.summarise(session, c[key], u["op50"], summary, HazardGroup(c[key].category), clock=at)
    workflow.propose_forwarding(session, c["proposed_50"], u["op50"], to_user=u["action50"], clock=at)
    p = workflow.propose_forwarding(session, c["assigned_50"], u["op50"], to_committee=committee, clock=at)
    workflow.decide_proposal(session, p, u["head50"], approve=True, clock=at)
    for key in ("in_action_50", "resolved_50"):
        p = workflow.propose_forwarding(session, c[key], u["op50"], to_user=u["action50"], clock=at)
        workflow.decide_proposal(session, p, u["head50"], approve=True, clock=at)
        workflow.acknowledge(session, c[key], u["action50"], clock=at)
        workflow.record_action(
            session, c[key], u["action50"], "โทรหาผู้อำนวยการโรงเรียนแล้ว นัดประชุมครูที่ปรึกษา", clock=at
        )
    workflow.resolve(session, c["resolved_50"], u["action50"], "ครูที่ปรึกษาดูแลนักเรียนใกล้ชิด เหตุยุติแล้ว", clock=at)
    p = workflow.propose_forwarding(session, c["district_5001"], u["op50"], to_office=cm[DISTRICT], clock=at)
    workflow.decide_proposal(session, p, u["head50"], approve=True, clock=at)
    # The moves above queued their workflow alerts: the cases come with a history, but each test starts
    # with an empty outbox (what it counts is what it did).
    session.flush()
    session.execute(delete(Notification).where(Notification.kind.in_(ALERT_KINDS)))
    session.flush()
    return seeded


def bulk_reference(i: int) -> str:
    """A unique, valid reference for the i-th bulk case (not starting with 0, Damm check digit)."""
    body = str(1_000_000 + i)
    if len(body) != 7:
        raise ValueError("bulk references run out after 9,000,000 cases")
    return body + str(damm_digit(body))


def seed_bulk_cases(
    session: Session,
    count: int,
    *,
    start: int = 0,
    office_codes: list[str] | None = None,
    events_per_case: int = 3,
    clock: Clock = utcnow,
    rng: random.Random | None = None,
) -> int:
    """Insert `count` plain cases spread over offices, states, groups and the last 90 days, with events.

    For load tests: core inserts in batches, no calls or recordings. References are numbered from
    `start` (use a different start for a second batch). Returns the number of cases inserted.
    """
    rng = rng or random.Random(0)
    offices = session.execute(
        select(Office.id, Office.province_code).where(Office.code.in_(office_codes))
        if office_codes
        else select(Office.id, Office.province_code)
    ).all()
    states, groups = list(CaseStatus), list(HazardGroup)
    now = clock()
    batch = 2000
    done = 0
    while done < count:
        n = min(batch, count - done)
        rows = []
        for i in range(start + done, start + done + n):
            office_id, province = rng.choice(offices)
            created = now - timedelta(minutes=rng.randint(0, 90 * 24 * 60))
            anonymous = rng.random() < 0.3
            rows.append(
                {
                    "reference": bulk_reference(i),
                    "status": rng.choice(states),
                    "category": rng.choice(groups),
                    "ivr_category": rng.choice(groups),
                    "language": "th",
                    "province_code": province,
                    "office_id": office_id,
                    "callback_choice": CallbackChoice.NONE if anonymous else CallbackChoice.CALLER,
                    "callback_number_masked": None if anonymous else "+66 8x xxx x678",
                    "opened_by": "caller",
                    "created_at": created,
                    "updated_at": created,
                }
            )
        ids = list(session.scalars(insert(Case).returning(Case.id), rows))
        events: list[dict[str, Any]] = [
            {
                "case_id": case_id,
                "at": now,
                "actor_id": None,
                "action": "route",
                "from_status": "draft",
                "to_status": "routed",
                "detail": {},
            }
            for case_id in ids
            for _ in range(events_per_case)
        ]
        if events:
            session.execute(insert(CaseEvent), events)
        done += n
    session.flush()
    return done
