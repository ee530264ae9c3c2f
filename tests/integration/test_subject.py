"""Erasure and access on request from the shell: `flask --app app subject erase|export` (issue 13, item 2).

Runs on SQLite and, with HOTLINE_TEST_DATABASE=postgresql, on PostgreSQL. Twilio is a stand-in that
records the recordings it was asked to delete.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import func, select

import app as hotline_app
from app import get_database
from cases import workflow
from cases.models import (
    Call,
    Callback,
    CallbackAttempt,
    CallbackState,
    CallEvent,
    Case,
    CaseAction,
    CaseEvent,
    SummaryVersion,
    TranscriptCorrection,
)
from cases.reference import display_reference
from cases.retention import set_hold
from cases.staff import AuditEvent, User
from infra.clock import utcnow
from infra.config import Config
from infra.crypto import FieldCipher
from tests.integration.test_console import World, seeded_world
from tests.support.seed import tone_wav
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus

CORRECTION = "น้องบอกว่าถูกรุ่นพี่ตีที่หลังโรงอาหารทุกวัน"
OUTCOME = "ผู้แจ้งเล่าว่าถูกข่มขู่ ได้ย้ายห้องเรียนให้แล้ว"
NOTE = "แม่ของผู้แจ้งรับสาย เล่าเพิ่มเติมเรื่องที่บ้าน"
ERASED_PARTS = {"caller_number", "callback", "recording", "corrections", "free_text", "call_events"}


@dataclass
class FakeTwilio:
    """Twilio's REST adapter as retention uses it: the SIDs it was asked to delete."""

    deleted: list[str] = field(default_factory=list)

    def delete_recording(self, recording_sid: str) -> None:
        self.deleted.append(recording_sid)


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> FakeTwilio:
    fake = FakeTwilio()
    monkeypatch.setattr(hotline_app, "twilio_rest", lambda _cfg: fake)
    return fake


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    """seed_console's world; in_action_50 resolved with an outcome, a correction and a call-back note,
    and admin50 with an e-mail (the CLI's --actor)."""
    world = seeded_world(app, config)
    with get_database(app).session() as session:
        case = session.get_one(Case, world.cases["in_action_50"])
        action50 = session.get_one(User, world.users["action50"])
        session.add(
            TranscriptCorrection(
                case_id=case.id,
                recording_id=world.recordings["in_action_50"],
                user_id=world.users["op50"],
                text=CORRECTION,
            )
        )
        workflow.resolve(session, case, action50, OUTCOME)
        # A callback still open on the resolved case (a follow-up call asked for one): erasure closes it.
        due = utcnow() + timedelta(hours=1)
        callback = Callback(case_id=case.id, office_id=case.office_id, due_at=due, first_due_at=due)
        session.add(callback)
        session.flush()
        session.add(
            CallbackAttempt(callback_id=callback.id, case_id=case.id, operator_id=action50.id, note=NOTE)
        )
        session.get_one(User, world.users["admin50"]).email = "Arunee@example.org"
        session.commit()
    return world


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


def erase(app: Flask, reference: str) -> Result:
    return run(
        app, "subject", "erase", reference, "--reason", "คำขอของผู้แจ้ง 3 ธ.ค.", "--actor", "arunee@example.org"
    )


def reference(app: Flask, case_id: int) -> str:
    with get_database(app).session() as session:
        return session.get_one(Case, case_id).reference


def tombstones(app: Flask, case_id: int) -> list[CaseEvent]:
    with get_database(app).session() as session:
        stmt = select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == "erased_on_request")
        return list(session.scalars(stmt.order_by(CaseEvent.id)))


def test_erase_leaves_the_handling_record_and_tombstones_and_nothing_the_reporter_gave(
    app: Flask, world: World, twilio: FakeTwilio
) -> None:
    case_id, rec_id = world.cases["in_action_50"], world.recordings["in_action_50"]
    with get_database(app).session() as session:
        rec = session.get_one(Recording, rec_id)
        sid, stored = rec.recording_sid, Path(str(rec.stored_path))
        handled = [
            (e.action, e.actor_id, e.from_status, e.to_status)
            for e in session.scalars(
                select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
            )
        ]
    assert stored.is_file()
    result = erase(app, display_reference(reference(app, case_id)))  # with the dash, as staff write it
    assert result.exit_code == 0, result.output
    assert "caller_number" in result.output and "1 files, 1 twilio_copies" in result.output
    assert not stored.exists() and twilio.deleted == [sid]
    with get_database(app).session() as session:
        case = session.get_one(Case, case_id)
        call = session.get_one(Call, case.call_id)
        rec = session.get_one(Recording, rec_id)
        transcript = session.scalars(select(Transcript).where(Transcript.recording_id == rec_id)).one()
        # Gone: the number, the file and Twilio's copy, the transcripts' words, the menu path, free text.
        assert (case.callback_number_enc, case.callback_number_masked) == (None, None)
        assert (call.caller_number_enc, call.caller_number_masked, call.ivr_state) == (None, None, {})
        assert rec.erased_at and rec.stored_path is None and rec.deleted_at_twilio is not None
        assert (transcript.text, transcript.words) == (None, None)
        assert session.scalars(
            select(TranscriptCorrection.text).where(TranscriptCorrection.case_id == case_id)
        ).all() == [""]
        assert (
            session.scalar(select(func.count()).select_from(CallEvent).where(CallEvent.call_id == call.id))
            == 0
        )
        assert session.scalars(
            select(CallbackAttempt.note).where(CallbackAttempt.case_id == case_id)
        ).all() == [None]
        callback = session.scalars(select(Callback).where(Callback.case_id == case_id)).one()
        assert callback.state == CallbackState.CANCELLED
        assert case.outcome is None
        events = list(
            session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id))
        )
        dumped = json.dumps([e.detail for e in events], ensure_ascii=False)
        assert OUTCOME[:20] not in dumped and NOTE not in dumped
        # Kept: the handling record (every move, who and when), the summary and the actions.
        kept = [(e.action, e.actor_id, e.from_status, e.to_status) for e in events[: len(handled)]]
        assert kept == handled and case.status == "resolved"
        assert case.summary and session.scalar(
            select(func.count()).select_from(SummaryVersion).where(SummaryVersion.case_id == case_id)
        )
        assert (
            session.scalar(select(func.count()).select_from(CaseAction).where(CaseAction.case_id == case_id))
            == 1
        )
        [row] = session.scalars(select(AuditEvent).where(AuditEvent.action == "subject_erased")).all()
        assert (
            row.case_id == case_id
            and row.user_id == world.users["admin50"]
            and row.reason == "คำขอของผู้แจ้ง 3 ธ.ค."
        )
        assert set(row.detail["parts"]) == ERASED_PARTS
        assert session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "append_only_unlocked")
        )
    stones = tombstones(app, case_id)
    assert {s.detail["what"] for s in stones} == ERASED_PARTS
    assert all(s.actor_id == world.users["admin50"] for s in stones)
    # Another case is untouched.
    with get_database(app).session() as session:
        other = session.get_one(Case, world.cases["routed_50"])
        assert (
            other.callback_number_enc
            and Path(str(session.get_one(Recording, world.recordings["routed_50"]).stored_path)).is_file()
        )


def test_a_second_erase_changes_nothing_and_leaves_no_new_tombstone(
    app: Flask, world: World, twilio: FakeTwilio
) -> None:
    case_id = world.cases["in_action_50"]
    assert erase(app, reference(app, case_id)).exit_code == 0
    before = len(tombstones(app, case_id))
    again = erase(app, reference(app, case_id))
    assert again.exit_code == 0 and "nothing left to erase" in again.output
    assert len(tombstones(app, case_id)) == before and len(twilio.deleted) == 1
    with get_database(app).session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == "subject_erased")).all()
        assert [r.detail["parts"] for r in rows] == [rows[0].detail["parts"], []]


def test_erase_refuses_a_held_case_an_unknown_reference_and_an_unknown_actor(
    app: Flask, world: World, twilio: FakeTwilio
) -> None:
    case_id = world.cases["in_action_50"]
    with get_database(app).session() as session:
        set_hold(
            session, session.get_one(Case, case_id), session.get_one(User, world.users["head50"]), "ศาลเรียก"
        )
        session.commit()
    held = erase(app, reference(app, case_id))
    assert held.exit_code == 1 and "legal hold" in held.output and len(held.output.strip().splitlines()) == 1
    with get_database(app).session() as session:
        assert session.get_one(Case, case_id).callback_number_enc is not None
        assert not session.scalars(select(AuditEvent).where(AuditEvent.action == "subject_erased")).all()
    assert tombstones(app, case_id) == [] and twilio.deleted == []
    for wrong in ("12345678", "abc"):
        unknown = erase(app, wrong)
        assert unknown.exit_code == 1 and "No case has that reference." in unknown.output
    nobody = run(
        app, "subject", "erase", reference(app, world.cases["routed_50"]), "--reason", "x", "--actor", "no@x"
    )
    assert nobody.exit_code == 1 and "no active staff account" in nobody.output


# ---- export -------------------------------------------------------------------------------------------


def _zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _plain_wavs(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"RIFF"]


def test_export_writes_a_zip_whose_manifest_checks_and_masks_the_number(
    app: Flask, config: Config, world: World, tmp_path: Path
) -> None:
    case_id, rec_id = world.cases["in_action_50"], world.recordings["in_action_50"]
    ref = reference(app, case_id)
    out = tmp_path / "exports" / "masked.zip"
    out.parent.mkdir()
    result = run(app, "subject", "export", ref, str(out))
    assert result.exit_code == 0, result.output
    files = _zip(out)
    with get_database(app).session() as session:
        case = session.get_one(Case, case_id)
        sid = session.get_one(Recording, rec_id).recording_sid
        number = FieldCipher(config.data_key).decrypt(
            str(session.get_one(Call, case.call_id).caller_number_enc)
        )
        masked = case.callback_number_masked
    assert set(files) == {
        "case.json",
        "events.json",
        f"transcripts/{sid}.json",
        f"recordings/{sid}.wav",
        "manifest.json",
    }
    manifest = json.loads(files["manifest.json"])
    assert manifest["reference"] == ref and manifest["generated_at"].endswith("Z")
    listed = {f["name"]: f["sha256"] for f in manifest["files"]}
    assert listed.keys() == set(files) - {"manifest.json"}
    assert all(hashlib.sha256(files[name]).hexdigest() == digest for name, digest in listed.items())
    assert files[f"recordings/{sid}.wav"] == tone_wav()  # opened from its sealed file
    fields = json.loads(files["case.json"])
    assert fields["callback_number"] == masked and number not in files["case.json"].decode()
    assert (
        fields["summary"]
        and json.loads(files[f"transcripts/{sid}.json"])["corrections"][0]["text"] == CORRECTION
    )
    assert any(e["action"] == "resolve" for e in json.loads(files["events.json"])["case_events"])
    # The plain audio went into the zip only: nothing plain under the data dir, no part file left.
    assert _plain_wavs(config.data_dir) == [] and sorted(p.name for p in out.parent.iterdir()) == [
        "masked.zip"
    ]
    with get_database(app).session() as session:
        [row] = session.scalars(select(AuditEvent).where(AuditEvent.action == "subject_exported")).all()
        assert row.case_id == case_id and row.detail["verified"] is False


def test_a_verified_export_unmasks_the_number_and_needs_a_reason(
    app: Flask, config: Config, world: World, tmp_path: Path
) -> None:
    case_id = world.cases["in_action_50"]
    ref = reference(app, case_id)
    refused = run(app, "subject", "export", ref, str(tmp_path / "v.zip"), "--verified")
    assert refused.exit_code == 1 and "reason" in refused.output and not (tmp_path / "v.zip").exists()
    result = run(
        app,
        "subject",
        "export",
        ref,
        str(tmp_path / "v.zip"),
        "--verified",
        "--reason",
        "บัตรประชาชนตรวจแล้ว",
        "--actor",
        "arunee@example.org",
    )
    assert result.exit_code == 0, result.output
    with get_database(app).session() as session:
        case = session.get_one(Case, case_id)
        number = FieldCipher(config.data_key).decrypt(
            str(session.get_one(Call, case.call_id).caller_number_enc)
        )
    fields = json.loads(_zip(tmp_path / "v.zip")["case.json"])
    assert fields["calls"][0]["caller_number"] == number
    with get_database(app).session() as session:
        [row] = session.scalars(select(AuditEvent).where(AuditEvent.action == "subject_exported")).all()
        assert row.detail["verified"] is True and row.reason == "บัตรประชาชนตรวจแล้ว"
        assert row.user_id == world.users["admin50"]


def test_export_refuses_bad_paths_in_one_line(
    app: Flask, config: Config, world: World, tmp_path: Path
) -> None:
    ref = reference(app, world.cases["in_action_50"])
    taken = tmp_path / "taken.zip"
    taken.write_bytes(b"mine")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    for path, says in (
        (taken, "already exists"),
        (tmp_path / "no-such-folder" / "x.zip", "is not a folder"),
        (config.data_dir / "x.zip", "inside the data dir"),
    ):
        result = run(app, "subject", "export", ref, str(path))
        assert (
            result.exit_code == 1 and says in result.output and len(result.output.strip().splitlines()) == 1
        )
    assert taken.read_bytes() == b"mine" and not (config.data_dir / "x.zip").exists()
    unknown = run(app, "subject", "export", "1234-5678", str(tmp_path / "u.zip"))
    assert unknown.exit_code == 1 and "No case has that reference." in unknown.output
    assert not (tmp_path / "u.zip").exists() and not list(tmp_path.glob("*.part"))


def test_an_erased_case_exports_without_number_audio_or_words(
    app: Flask, world: World, twilio: FakeTwilio, tmp_path: Path
) -> None:
    case_id = world.cases["in_action_50"]
    assert erase(app, reference(app, case_id)).exit_code == 0
    assert run(app, "subject", "export", reference(app, case_id), str(tmp_path / "e.zip")).exit_code == 0
    files = _zip(tmp_path / "e.zip")
    assert not [n for n in files if n.startswith("recordings/")]
    blob = b"".join(files.values()).decode()
    assert (
        CORRECTION not in blob
        and OUTCOME not in blob
        and json.loads(files["case.json"])["callback_number"] is None
    )
    assert "erased_on_request" in files["events.json"].decode()


def test_the_export_is_built_in_memory_too(app: Flask, world: World) -> None:
    """export_case writes to any binary stream: the console builds the zip in memory."""
    from cases.subject import ExportOptions, export_case
    from console.playback import sealer

    cfg: Config = app.config["HOTLINE"]
    out = io.BytesIO()
    with get_database(app).session() as session:
        case = session.get_one(Case, world.cases["routed_50"])
        options = ExportOptions(FieldCipher(cfg.data_key), sealer(app))
        manifest = export_case(session, case, out, options, actor_id=None, now=utcnow())
        session.commit()
    assert {f["name"] for f in manifest.files} < set(zipfile.ZipFile(io.BytesIO(out.getvalue())).namelist())


def test_a_recording_not_yet_downloaded_or_transcribed_is_not_brought_back_by_its_jobs(
    app: Flask, world: World, twilio: FakeTwilio
) -> None:
    """A fresh case: its recording still waits at Twilio, its transcript in the queue. Both jobs re-check
    these states before they write, so the erasure takes them out of the queues."""
    case_id, rec_id = world.cases["routed_50"], world.recordings["routed_50"]
    with get_database(app).session() as session:
        rec = session.get_one(Recording, rec_id)
        Path(str(rec.stored_path)).unlink()
        rec.storage_status, rec.stored_path, sid = StorageStatus.PENDING, None, rec.recording_sid
        transcript = session.scalars(select(Transcript).where(Transcript.recording_id == rec_id)).one()
        transcript.status, transcript.text, transcript.words = TranscriptStatus.QUEUED, None, None
        session.commit()
    assert erase(app, reference(app, case_id)).exit_code == 0
    with get_database(app).session() as session:
        rec = session.get_one(Recording, rec_id)
        transcript = session.scalars(select(Transcript).where(Transcript.recording_id == rec_id)).one()
        assert rec.storage_status == StorageStatus.ABSENT and rec.erased_at is not None
        assert transcript.status == TranscriptStatus.FAILED
    assert twilio.deleted == [sid]  # Twilio's copy goes all the same
