"""The audit that tells the story: versions kept and shown, views/plays/refusals audited, the trail pages."""

from __future__ import annotations

import re
import secrets

import pytest
from flask import Flask
from sqlalchemy import select

from app import get_database
from cases.accounts import hash_password
from cases.models import Case, CaseEvent, Office, SummaryVersion, TranscriptCorrection
from cases.staff import AuditEvent, Role, RoleAssignment, User
from infra.config import Config
from tests.integration.test_console import World, _number_of, as_user, audits, fetch, post, seeded_world, text
from tests.support.seed import SAMPLE_WORDS


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    """seed_console's world, as test_console keeps it (ids only)."""
    return seeded_world(app, config)


def _staff(app: Flask, world: World, username: str, role: Role, office_code: str) -> int:
    """Another person with a role at an office (the seed has one admin, at Chiang Mai)."""
    with get_database(app).session() as session:
        person = session.scalar(select(User).where(User.username == username))
        if person is None:
            person = User(
                username=username,
                display_name=f"ผู้ใช้ {username}",
                password_hash=hash_password(world.password),
                session_token=secrets.token_hex(32),
            )
            session.add(person)
            session.flush()
        office = session.scalars(select(Office.id).where(Office.code == office_code)).one()
        session.add(RoleAssignment(user_id=person.id, office_id=office, role=role))
        return person.id


def _reference(app: Flask, case_id: int) -> str:
    with get_database(app).session() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return f"{case.reference[:4]}-{case.reference[4:]}"


# ---- versions ----------------------------------------------------------------------------------------------


def test_every_summary_is_kept_and_the_earlier_ones_are_shown(app: Flask, world: World) -> None:
    case_id = world.cases["routed_50"]
    op = as_user(app, world, "op50")
    for summary in ("สรุปครั้งแรก เด็กถูกรังแก", "สรุปครั้งที่สอง เด็กถูกรังแกทุกวัน"):
        assert (
            post(op, f"/console/cases/{case_id}/summary", summary=summary, category="violence").status_code
            == 302
        )
    with get_database(app).session() as session:
        versions = session.scalars(select(SummaryVersion).where(SummaryVersion.case_id == case_id)).all()
        assert [(v.text, v.user_id) for v in versions] == [
            ("สรุปครั้งแรก เด็กถูกรังแก", world.users["op50"]),
            ("สรุปครั้งที่สอง เด็กถูกรังแกทุกวัน", world.users["op50"]),
        ]
        events = session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == "summarised")
        ).all()
        assert [e.detail["version"] for e in events] == [1, 2]
        assert all("สรุป" not in str(e.detail) for e in events)  # the words live in the versions only
    page = text(op.get(f"/console/cases/{case_id}"))
    earlier = page.split('id="summary-versions"', 1)[1].split("</details>", 1)[0]
    assert "สรุปครั้งแรก เด็กถูกรังแก" in earlier and "ฉบับที่ 1 โดย สมชาย ใจดี" in earlier
    assert "สรุปครั้งที่สอง" not in earlier  # the latest is the summary itself


def test_every_transcript_correction_is_kept_and_the_earlier_ones_are_shown(app: Flask, world: World) -> None:
    case_id, rec = world.cases["draft_central"], world.recordings["draft_central"]
    agent = as_user(app, world, "agent")
    for words in ("ฉบับแก้ที่หนึ่ง", "ฉบับแก้ที่สอง"):
        post(agent, f"/console/cases/{case_id}/recordings/{rec}/correction", text=words)
    with get_database(app).session() as session:
        kept = session.scalars(
            select(TranscriptCorrection.text).where(TranscriptCorrection.recording_id == rec)
        )
        assert list(kept) == ["ฉบับแก้ที่หนึ่ง", "ฉบับแก้ที่สอง"]
    page = text(agent.get(f"/console/cases/{case_id}"))
    earlier = page.split(f'id="corrections-{rec}"', 1)[1].split("</details>", 1)[0]
    assert "ฉบับแก้ที่หนึ่ง" in earlier and "ฉบับที่ 1 โดย" in earlier and "ฉบับแก้ที่สอง" not in earlier


# ---- reads and refusals are audited ------------------------------------------------------------------------


def _no_personal_data(app: Flask, config: Config, world: World) -> None:
    digits = _number_of(app, config, world.cases["routed_50"])[-9:]
    with get_database(app).session() as session:
        for row in session.scalars(select(AuditEvent)):
            written = f"{row.detail} {row.reason or ''}"
            assert digits not in written
            assert not any(str(w["word"]) in written for w in SAMPLE_WORDS), written


def test_a_case_view_and_a_recording_play_are_audited_once(app: Flask, config: Config, world: World) -> None:
    case_id, rec = world.cases["routed_50"], world.recordings["routed_50"]
    op = as_user(app, world, "op50")
    assert op.get(f"/console/cases/{case_id}").status_code == 200
    (viewed,) = audits(app, "case_viewed")
    assert (viewed.user_id, viewed.case_id) == (world.users["op50"], case_id)
    url = f"/console/recordings/{rec}/audio"
    assert fetch(op, url).status_code == 200  # a download: one play
    assert fetch(op, url, Range="bytes=100-1099").status_code == 206  # a seek: not another play
    assert fetch(op, url, Range="bytes=0-").status_code == 206  # the player starts again
    played = audits(app, "recording_played")
    assert [(p.user_id, p.case_id, p.detail) for p in played] == [
        (world.users["op50"], case_id, {"recording": rec})
    ] * 2
    _no_personal_data(app, config, world)


def test_refused_reveals_are_audited_with_why(app: Flask, config: Config, world: World) -> None:
    case_id = world.cases["routed_50"]
    op = as_user(app, world, "op50")
    assert post(op, f"/console/cases/{case_id}/reveal", reason="   ").status_code == 302
    agent = as_user(app, world, "agent")  # sees the case, does not work it
    assert post(agent, f"/console/cases/{case_id}/reveal", reason="อยากรู้").status_code == 302
    refused = audits(app, "reveal_number_refused")
    assert [(a.user_id, a.case_id, a.detail.get("why"), a.reason) for a in refused] == [
        (world.users["op50"], case_id, "no_reason", None),
        (world.users["agent"], case_id, "no_right", "อยากรู้"),
    ]
    assert audits(app, "reveal_number") == []
    _no_personal_data(app, config, world)


# ---- the trail pages ---------------------------------------------------------------------------------------


def test_an_admin_reads_a_cases_trail_in_thai_with_buddhist_era_dates(app: Flask, world: World) -> None:
    case_id = world.cases["routed_50"]
    as_user(app, world, "op50").get(f"/console/cases/{case_id}")
    post(as_user(app, world, "agent"), f"/console/cases/{case_id}/reveal", reason="อยากรู้")
    admin = as_user(app, world, "admin50")
    found = admin.get("/console/audit", query_string={"reference": _reference(app, case_id)})
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/console/audit/cases/{case_id}")
    page = text(admin.get(f"/console/audit/cases/{case_id}"))
    assert "บันทึกการตรวจสอบของเรื่อง" in page
    rows = re.findall(r'<tr class="trail-(\w+) action-(\w+)">', page)
    assert ("event", "route") in rows and ("audit", "case_viewed") in rows
    assert ("audit", "reveal_number_refused") in rows
    assert "เปิดดูเรื่อง" in page and "ไม่ใช่เจ้าหน้าที่ของเรื่องนี้" in page and "เหตุผล: อยากรู้" in page
    years = {int(y) for y in re.findall(r'class="nowrap when">\d+ \S+ (\d{4})', page)}
    assert years and all(y > 2500 for y in years)  # Buddhist Era
    (read,) = audits(app, "audit_trail_viewed")  # reading the trail is itself on the trail
    assert (read.user_id, read.case_id) == (world.users["admin50"], case_id)


def test_the_trail_is_for_the_admins_of_the_cases_offices_only(app: Flask, world: World) -> None:
    chiang_mai, bangkok = world.cases["routed_50"], world.cases["routed_10"]
    admin50 = as_user(app, world, "admin50")
    assert admin50.get(f"/console/audit/cases/{world.cases['district_5001']}").status_code == 200  # below it
    assert admin50.get(f"/console/audit/cases/{bangkok}").status_code == 404
    admin10_id = _staff(app, world, "admin10", Role.ADMIN, "10")
    admin10 = as_user(app, world, "admin10")
    assert admin10.get(f"/console/audit/cases/{bangkok}").status_code == 200
    assert admin10.get(f"/console/audit/cases/{chiang_mai}").status_code == 404
    assert admin10.get(f"/console/audit/users/{world.users['op50']}").status_code == 404
    _staff(app, world, "admin_central", Role.ADMIN, "central")
    central = as_user(app, world, "admin_central")
    assert central.get(f"/console/audit/cases/{bangkok}").status_code == 200
    assert central.get(f"/console/audit/cases/{chiang_mai}").status_code == 200
    op = as_user(app, world, "op50")  # case work is not audit work
    assert op.get("/console/audit").status_code == 403
    assert op.get(f"/console/audit/cases/{chiang_mai}").status_code == 404
    assert op.get(f"/console/audit/users/{world.users['op50']}").status_code == 404
    refused = [(a.user_id, a.detail["what"]) for a in audits(app, "access_refused")]
    assert refused == [
        (world.users["admin50"], "audit_case"),
        (admin10_id, "audit_case"),
        (admin10_id, "audit_user"),
        (world.users["op50"], "audit_case"),
        (world.users["op50"], "audit_user"),
    ]


def test_a_users_recent_actions_stay_within_the_admins_offices(app: Flask, world: World) -> None:
    chiang_mai, bangkok = world.cases["routed_50"], world.cases["routed_10"]
    _staff(app, world, "op10", Role.OPERATOR, "50")  # works at Bangkok and at Chiang Mai
    op10 = as_user(app, world, "op10")
    assert op10.get(f"/console/cases/{bangkok}").status_code == 200
    assert op10.get(f"/console/cases/{chiang_mai}").status_code == 200
    admin = as_user(app, world, "admin50")
    found = admin.get("/console/audit", query_string={"username": "op10"})
    assert found.headers["Location"].endswith(f"/console/audit/users/{world.users['op10']}")
    page = text(admin.get(f"/console/audit/users/{world.users['op10']}"))
    assert "การดำเนินการล่าสุดของ" in page
    assert _reference(app, chiang_mai) in page
    assert _reference(app, bangkok) not in page  # Bangkok's cases are not Chiang Mai's admin's to audit
    solo_id = _staff(app, world, "solo10", Role.OPERATOR, "10")
    assert admin.get(f"/console/audit/users/{solo_id}").status_code == 404
    missing = admin.get("/console/audit", query_string={"reference": "1234-5678"})
    assert missing.status_code == 200 and "ไม่พบ" in text(missing)
    # Another office's case or person reads the same as one that does not exist.
    for query in ({"reference": _reference(app, bangkok)}, {"username": "solo10"}):
        foreign = admin.get("/console/audit", query_string=query)
        assert foreign.status_code == 200 and "ไม่พบ" in text(foreign)
