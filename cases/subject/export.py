"""Access on request (PDPA s.30): what the service holds about one report, as a zip with a manifest.

The zip holds case.json (the case's fields), transcripts/<recording>.json (machine transcript and staff
corrections), recordings/<recording>.wav (opened from their sealed files in memory: plain audio is written
only into the zip, never to a file of its own), events.json (the case's events and the caller's menu
path) and manifest.json (every other file with its SHA-256, the reference, the UTC time it was made).
Staff are not named: the subject's data, not the staff's. The reporter's number is masked unless the
export answers a verified request; either way it is audited, with the reason.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases import audit
from cases.models import Callback, CallEvent, Case, CaseEvent, Office, TranscriptCorrection
from cases.reference import display_reference
from cases.subject.erase import calls_of, find_case, require_reason
from infra.clock import iso_utc
from infra.crypto import FieldCipher
from infra.sealed import RecordingCipher, RecordingKeyError, SealBroken
from transcription.models import Recording, Transcript

MANIFEST = "manifest.json"


@dataclass
class ExportOptions:
    """How the export is made: `verified` (with its reason) shows the reporter's number unmasked."""

    cipher: FieldCipher
    sealer: RecordingCipher
    verified: bool = False
    reason: str = ""


@dataclass
class Manifest:
    reference: str
    generated_at: str
    verified: bool
    files: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "generated_at": self.generated_at,
            "number": "unmasked (verified request)" if self.verified else "masked",
            "files": self.files,
        }


class _Zip:
    """Writes members into the zip, each hashed as it goes, and lists them for the manifest."""

    def __init__(self, out: IO[bytes], manifest: Manifest) -> None:
        self.zf = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED)
        self.manifest = manifest

    def json(self, name: str, value: Any) -> None:
        self.stream(name, [json.dumps(value, ensure_ascii=False, indent=2).encode("utf-8")])

    def stream(self, name: str, parts: Any) -> None:
        digest, size = hashlib.sha256(), 0
        with self.zf.open(name, "w") as member:
            for part in parts:
                digest.update(part)
                size += len(part)
                member.write(part)
        self.manifest.files.append({"name": name, "sha256": digest.hexdigest(), "bytes": size})

    def close(self) -> None:
        self.json_unlisted(MANIFEST, self.manifest.as_json())
        self.zf.close()

    def json_unlisted(self, name: str, value: Any) -> None:
        self.zf.writestr(name, json.dumps(value, ensure_ascii=False, indent=2).encode("utf-8"))


def export_case(
    session: Session,
    case: Case,
    out: IO[bytes],
    options: ExportOptions,
    *,
    actor_id: int | None,
    now: datetime,
) -> Manifest:
    """Write the case's zip to `out` and audit it (in the caller's transaction); the manifest written."""
    reason = require_reason(options.reason) if options.verified else options.reason.strip()[:500]
    manifest = Manifest(case.reference, iso_utc(now), options.verified)
    writer = _Zip(out, manifest)
    writer.json("case.json", _case_fields(session, case, options))
    recordings = list(
        session.scalars(select(Recording).where(Recording.case_id == case.id).order_by(Recording.id))
    )
    for rec in recordings:
        writer.json(f"transcripts/{rec.recording_sid}.json", _transcript(session, rec))
        _recording(writer, rec, options.sealer)
    writer.json("events.json", _events(session, case))
    writer.close()
    detail = {"verified": options.verified, "files": len(manifest.files)}
    audit.record(
        session,
        actor_id,
        "subject_exported",
        case_id=case.id,
        detail=detail,
        reason=reason or None,
        clock=lambda: now,
    )
    return manifest


def _number(cipher: FieldCipher, enc: str | None, masked: str | None, verified: bool) -> str | None:
    if verified and enc:
        return cipher.decrypt(enc)
    return masked


def _case_fields(session: Session, case: Case, options: ExportOptions) -> dict[str, Any]:
    office = session.get(Office, case.office_id)
    callback = session.scalar(select(Callback).where(Callback.case_id == case.id))
    verified = options.verified
    return {
        "reference": display_reference(case.reference),
        "status": str(case.status),
        "category": str(case.category),
        "category_chosen_on_the_phone": str(case.ivr_category),
        "language": case.language,
        "province_code": case.province_code,
        "office": {"code": office.code, "name_th": office.name_th, "name_en": office.name_en}
        if office
        else None,
        "callback_choice": str(case.callback_choice),
        "callback_number": _number(
            options.cipher, case.callback_number_enc, case.callback_number_masked, verified
        ),
        "calls": [
            {
                "started_at": iso_utc(call.created_at),
                "ended_at": iso_utc(call.ended_at) if call.ended_at else None,
                "caller_number": _number(
                    options.cipher, call.caller_number_enc, call.caller_number_masked, verified
                ),
                "language": call.language,
            }
            for call in calls_of(session, case)
        ],
        "callback": {
            "state": str(callback.state),
            "due_at": iso_utc(callback.due_at),
            "attempts": callback.attempts,
            "closed_at": iso_utc(callback.closed_at) if callback.closed_at else None,
        }
        if callback
        else None,
        "summary": case.summary,
        "outcome": case.outcome,
        "under_legal_hold": case.legal_hold_at is not None,
        "created_at": iso_utc(case.created_at),
        "updated_at": iso_utc(case.updated_at),
    }


def _transcript(session: Session, rec: Recording) -> dict[str, Any]:
    machine = session.scalar(select(Transcript).where(Transcript.recording_id == rec.id))
    corrections = session.scalars(
        select(TranscriptCorrection)
        .where(TranscriptCorrection.recording_id == rec.id)
        .order_by(TranscriptCorrection.id)
    )
    return {
        "recording": rec.recording_sid,
        "recorded_at": iso_utc(rec.created_at),
        "erased_at": iso_utc(rec.erased_at) if rec.erased_at else None,
        "machine": {
            "status": str(machine.status),
            "language": machine.language,
            "engine": machine.engine,
            "text": machine.text,
            "words": machine.words,
        }
        if machine
        else None,
        "corrections": [{"at": iso_utc(c.at), "text": c.text} for c in corrections],
    }


def _recording(writer: _Zip, rec: Recording, sealer: RecordingCipher) -> None:
    """The recording's plain audio, opened chunk by chunk straight into the zip (never a file of its own)."""
    if not rec.stored_path:
        return
    try:
        sealed = sealer.open(Path(rec.stored_path))
    except (OSError, SealBroken, RecordingKeyError) as exc:
        writer.manifest.files.append(
            {"name": f"recordings/{rec.recording_sid}.wav", "missing": type(exc).__name__}
        )
        return
    with sealed:
        writer.stream(f"recordings/{rec.recording_sid}.wav", sealed.chunks(0, sealed.plain_size))


def _events(session: Session, case: Case) -> dict[str, Any]:
    events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id))
    calls = [c.id for c in calls_of(session, case)]
    path = session.scalars(select(CallEvent).where(CallEvent.call_id.in_(calls)).order_by(CallEvent.id))
    return {
        "case_events": [
            {
                "at": iso_utc(e.at),
                "action": e.action,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "detail": e.detail,
            }
            for e in events
        ],
        "menu_path": [
            {"at": iso_utc(e.at), "node": e.node, "kind": e.kind, "detail": e.detail} for e in path
        ],
    }


def export_subject(
    session: Session,
    reference: str,
    out: IO[bytes],
    options: ExportOptions,
    *,
    actor_id: int | None,
    now: datetime,
) -> Manifest:
    """Export the case with this reference (with or without the dash) to `out`; audited in `session`."""
    return export_case(session, find_case(session, reference), out, options, actor_id=actor_id, now=now)
