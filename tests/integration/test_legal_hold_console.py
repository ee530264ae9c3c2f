"""Legal hold from the console (heads only, CSRF, audited, in Thai), and retention's tombstones in Thai."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask

from app import get_database, retention_settings
from cases.models import Case
from cases.retention import RetentionSweep
from infra.clock import utcnow
from infra.config import Config
from tests.integration.test_console import World, as_user, audits, fetch, post, seeded_world, text


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    """seed_console's world, with its recordings on disk (ids only, as test_console keeps it)."""
    return seeded_world(app, config)


def _held(app: Flask, case_id: int) -> Case:
    with get_database(app).session() as session:
        return session.get_one(Case, case_id)


def test_a_head_sets_a_legal_hold_with_a_reason_and_it_is_audited(app: Flask, world: World) -> None:
    case_id = world.cases["in_action_50"]
    page = f"/console/cases/{case_id}"
    head = as_user(app, world, "head50")
    shown = text(fetch(head, page))
    assert "การระงับการลบข้อมูลตามกฎหมาย" in shown and "ระงับการลบข้อมูลของเรื่องนี้ตามกฎหมาย" in shown
    operator = as_user(app, world, "op50")
    assert "ระงับการลบข้อมูลของเรื่องนี้ตามกฎหมาย" not in text(fetch(operator, page))  # no form for them
    # Without the CSRF token: refused before anything is read.
    assert head.post(f"{page}/hold", data={"reason": "x"}).status_code == 400
    # An SC-Operator is refused in words; a head without a reason too.
    post(operator, f"{page}/hold", reason="สอบสวน")
    post(head, f"{page}/hold", reason="  ")
    assert _held(app, case_id).legal_hold_at is None and audits(app, "legal_hold_set") == []
    post(head, f"{page}/hold", reason="ศาลเรียกเอกสาร คดีหมายเลข 123/2569")
    held = _held(app, case_id)
    assert held.legal_hold_at is not None and held.legal_hold_reason == "ศาลเรียกเอกสาร คดีหมายเลข 123/2569"
    [row] = audits(app, "legal_hold_set")
    assert row.case_id == case_id and row.user_id == world.users["head50"] and row.reason
    shown = text(fetch(head, page))
    assert "ระงับการลบข้อมูลตามกฎหมายตั้งแต่" in shown and "ศาลเรียกเอกสาร" in shown
    assert "ระงับการลบข้อมูลตามกฎหมายแล้ว" in shown  # the timeline's event, in Thai
    post(head, f"{page}/hold/release", reason="คดีสิ้นสุดแล้ว")
    assert _held(app, case_id).legal_hold_at is None and len(audits(app, "legal_hold_released")) == 1


def test_retention_tombstones_read_in_thai_on_the_case_page_and_audit_trail(app: Flask, world: World) -> None:
    sweep = RetentionSweep(
        get_database(app), retention_settings(app), None, clock=lambda: utcnow() + timedelta(days=4000)
    )
    done = sweep.sweep()
    assert done["drafts"] == 2 and done["audit"] >= 0
    page = text(fetch(as_user(app, world, "agent"), f"/console/cases/{world.cases['draft_50']}"))
    assert "ลบตามระยะเวลาการเก็บรักษาข้อมูล" in page
    assert "หมายเลขโทรศัพท์ ไฟล์เสียง ข้อความถอดเสียง และลำดับการกดเมนูของร่างเรื่อง" in page
    trail = text(fetch(as_user(app, world, "admin50"), f"/console/audit/cases/{world.cases['in_action_50']}"))
    assert "ลบตามระยะเวลาการเก็บรักษาข้อมูล" in trail and "ลำดับการกดเมนูของผู้โทร" in trail
    with get_database(app).session() as session:
        case = session.get_one(Case, world.cases["draft_50"])
        assert case.callback_number_enc is None and case.reference  # the case and its reference stay
