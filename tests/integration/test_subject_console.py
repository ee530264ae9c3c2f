"""Erasure and export from the console: one admin asks, another approves; CSRF, office scope, Thai, audit."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app import get_database, retention_settings
from cases.models import Call, Case, CaseEvent, ErasureRequest, Office
from cases.retention import RetentionSweep, set_hold
from cases.staff import Role, RoleAssignment, User
from console.subject import erasure_sweep
from infra.config import Config
from tests.integration.test_console import World, as_user, audits, fetch, post, seeded_world, text
from tests.integration.test_subject import FakeTwilio
from transcription.models import Recording, Transcript


@pytest.fixture
def twilio(app: Flask) -> FakeTwilio:
    fake = FakeTwilio()
    erasure_sweep.install(app, lambda: RetentionSweep(get_database(app), retention_settings(app), fake))
    return fake


def _admin(app: Flask, world: World, username: str, office_code: str) -> None:
    """A second admin (admin50's password), at the office with that code."""
    with get_database(app).session() as session:
        first = session.get_one(User, world.users["admin50"])
        office = session.scalars(select(Office).where(Office.code == office_code)).one()
        user = User(
            username=username,
            display_name=f"ผู้ดูแล {username}",
            password_hash=first.password_hash,
            active=True,
            locale="th",
            failed_logins=0,
            session_token=username * 4,
        )
        session.add(user)
        session.flush()
        session.add(RoleAssignment(user_id=user.id, office_id=office.id, role=Role.ADMIN))
        session.commit()
        world.users[username] = user.id


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    world = seeded_world(app, config)
    _admin(app, world, "admin50b", "50")
    _admin(app, world, "admin10", "10")
    return world


def _requests(app: Flask, case_id: int) -> list[ErasureRequest]:
    with get_database(app).session() as session:
        stmt = select(ErasureRequest).where(ErasureRequest.case_id == case_id).order_by(ErasureRequest.id)
        return list(session.scalars(stmt))


def _number(app: Flask, case_id: int) -> str | None:
    with get_database(app).session() as session:
        return session.get_one(Call, session.get_one(Case, case_id).call_id).caller_number_enc


def test_one_admin_asks_another_approves_and_only_then_the_case_is_erased(
    app: Flask, world: World, twilio: FakeTwilio
) -> None:
    case_id, rec_id = world.cases["routed_50"], world.recordings["routed_50"]
    trail = f"/console/audit/cases/{case_id}"
    asks, approves = as_user(app, world, "admin50"), as_user(app, world, "admin50b")
    page = text(fetch(asks, trail))
    assert "การลบและการขอรับข้อมูลตามคำขอ" in page and "ขอลบข้อมูลส่วนบุคคลของเรื่องนี้" in page
    # Without the CSRF token: refused before anything is read.
    assert asks.post(f"/console/subject/cases/{case_id}/erasure", data={"reason": "x"}).status_code == 400
    # No reason: refused in words; nothing asked.
    post(asks, f"/console/subject/cases/{case_id}/erasure", reason="  ")
    assert _requests(app, case_id) == []
    post(asks, f"/console/subject/cases/{case_id}/erasure", reason="ผู้แจ้งขอทางโทรศัพท์ 3 ธ.ค.")
    [asked] = _requests(app, case_id)
    assert asked.status == "pending" and asked.requested_by == world.users["admin50"]
    [row] = audits(app, "erasure_requested")
    assert row.case_id == case_id and row.reason == "ผู้แจ้งขอทางโทรศัพท์ 3 ธ.ค."
    assert _number(app, case_id) is not None  # nothing erased yet
    shown = text(fetch(asks, trail))
    assert "รอผู้ดูแลคนที่สองอนุมัติ" in shown and "อนุมัติและลบข้อมูลทันที" not in shown  # not for the asker
    # The asker cannot approve their own request (the form is not shown; a forged post is refused).
    post(asks, f"/console/subject/erasures/{asked.id}/decision", decision="approve")
    assert _requests(app, case_id)[0].status == "pending" and _number(app, case_id) is not None
    assert "อนุมัติและลบข้อมูลทันที" in text(fetch(approves, trail))
    post(approves, f"/console/subject/erasures/{asked.id}/decision", decision="approve")
    [decided] = _requests(app, case_id)
    assert decided.status == "approved" and decided.decided_by == world.users["admin50b"]
    with get_database(app).session() as session:
        case = session.get_one(Case, case_id)
        rec = session.get_one(Recording, rec_id)
        transcript = session.scalars(select(Transcript).where(Transcript.recording_id == rec_id)).one()
        assert case.callback_number_enc is None and case.status == "routed"
        assert rec.stored_path is None and transcript.text is None
        stones = session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == "erased_on_request")
        ).all()
        assert {s.detail["what"] for s in stones} >= {"caller_number", "recording", "call_events"}
        assert {s.actor_id for s in stones} == {world.users["admin50b"]}
        sid = rec.recording_sid
    assert _number(app, case_id) is None and twilio.deleted == [sid]
    [erased] = audits(app, "subject_erased")
    assert erased.user_id == world.users["admin50b"] and erased.detail["request"] == asked.id
    # The erased case's page shows its tombstones, in Thai, to its staff; the trail too.
    page = text(fetch(as_user(app, world, "op50"), f"/console/cases/{case_id}"))
    assert "ลบตามคำขอของผู้แจ้ง" in page and "หมายเลขโทรศัพท์ของผู้แจ้ง" in page
    assert "ลบตามคำขอของผู้แจ้ง" in text(fetch(approves, trail))
    # Decided: a second approval is refused, and nothing more happens.
    post(approves, f"/console/subject/erasures/{asked.id}/decision", decision="approve")
    assert len(audits(app, "subject_erased")) == 1


def test_a_request_can_be_rejected_and_a_held_case_cannot_be_asked_for(
    app: Flask, world: World, twilio: FakeTwilio
) -> None:
    case_id = world.cases["routed_50"]
    asks, other = as_user(app, world, "admin50"), as_user(app, world, "admin50b")
    post(asks, f"/console/subject/cases/{case_id}/erasure", reason="ขอทางจดหมาย")
    [asked] = _requests(app, case_id)
    post(other, f"/console/subject/erasures/{asked.id}/decision", decision="reject")
    assert _requests(app, case_id)[0].status == "rejected" and _number(app, case_id) is not None
    assert len(audits(app, "erasure_rejected")) == 1 and audits(app, "subject_erased") == []
    held_id = world.cases["in_action_50"]
    with get_database(app).session() as session:
        head = session.get_one(User, world.users["head50"])
        set_hold(session, session.get_one(Case, held_id), head, "ศาลเรียกเอกสาร")
        session.commit()
    post(asks, f"/console/subject/cases/{held_id}/erasure", reason="ขอทางจดหมาย")
    assert _requests(app, held_id) == [] and _number(app, held_id) is not None
    assert "ระงับการลบข้อมูลตามกฎหมาย" in text(fetch(asks, f"/console/audit/cases/{held_id}"))


def test_erasure_and_export_are_for_admins_of_the_case_office_only(app: Flask, world: World) -> None:
    case_id = world.cases["routed_50"]
    for username in ("admin10", "op50", "head50"):
        client = as_user(app, world, username)
        assert post(client, f"/console/subject/cases/{case_id}/erasure", reason="x").status_code == 404
        assert post(client, f"/console/subject/cases/{case_id}/export").status_code == 404
    assert _requests(app, case_id) == [] and audits(app, "subject_exported") == []
    assert len(audits(app, "access_refused")) == 6


def test_an_admin_downloads_the_export_masked_and_it_is_audited(
    app: Flask, config: Config, world: World
) -> None:
    case_id = world.cases["routed_50"]
    client = as_user(app, world, "admin50")
    response = post(client, f"/console/subject/cases/{case_id}/export")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Cache-Control"] == "no-store"
    files = zipfile.ZipFile(io.BytesIO(response.get_data())).namelist()
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    manifest = json.loads(archive.read("manifest.json"))
    with get_database(app).session() as session:
        case = session.get_one(Case, case_id)
        masked, reference = case.callback_number_masked, case.reference
    assert manifest["reference"] == reference and manifest["number"] == "masked"
    assert json.loads(archive.read("case.json"))["callback_number"] == masked
    assert any(name.startswith("recordings/") for name in files)
    [row] = audits(app, "subject_exported")
    assert (
        row.user_id == world.users["admin50"] and row.case_id == case_id and row.detail["verified"] is False
    )
    plain = [p for p in Path(config.data_dir).rglob("*") if p.is_file() and p.read_bytes()[:4] == b"RIFF"]
    assert plain == []
