"""The privacy page: office admins only, in Thai with Buddhist Era dates, their offices' holds, last purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import get_database, retention_settings
from cases.models import Case
from cases.retention import RetentionSweep
from console.base import console_clock
from infra.config import Config
from tests.integration.test_console import World, as_user, fetch, seeded_world, set_locale, text

# 02:29 on 4 December 2026 in Bangkok: the nightly sweep (02:30 by default) is a minute away.
NOW = datetime(2026, 12, 3, 19, 29, tzinfo=UTC)
PAGE = "/console/privacy"


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    console_clock.install(app, lambda: NOW)
    return seeded_world(app, config)


def _hold(app: Flask, world: World, key: str, by: str) -> None:
    """Put the case under legal hold, as a head did."""
    with get_database(app).session() as session:
        case = session.get_one(Case, world.cases[key])
        case.legal_hold_at, case.legal_hold_by, case.legal_hold_reason = NOW, world.users[by], "สอบสวน"


def _admin(app: Flask, world: World) -> FlaskClient:
    return as_user(app, world, "admin50")


def test_an_admin_reads_what_is_kept_for_how_long_and_the_next_purge_in_thai(
    app: Flask, world: World
) -> None:
    page = fetch(_admin(app, world), PAGE)
    assert page.status_code == 200
    shown = text(page)
    assert "ความเป็นส่วนตัวและการเก็บรักษาข้อมูล" in shown
    # The periods are the loaded retention file's (the shipped defaults), in Thai words.
    assert "เบอร์ผู้แจ้ง: ลบเมื่อปิดการโทรกลับแล้ว 30 วัน" in shown
    assert "เสียงบันทึกและคำถอดเสียงอัตโนมัติ: ลบเมื่อยุติเรื่องแล้ว 90 วัน" in shown
    assert "เส้นทางการกดเมนูโทรศัพท์ของผู้โทร: ลบเมื่อโทรเข้ามาแล้ว 180 วัน" in shown
    assert "ลบเมื่อบันทึกไว้แล้ว 1825 วัน" in shown and "เสียงบันทึกที่ไม่อยู่ในเรื่องใด: ลบเมื่อโทรเข้ามาแล้ว 60 วัน" in shown
    # The next purge: tonight's 02:30 in Bangkok, with the Buddhist Era year.
    assert '<p class="next-purge">4 ธ.ค. 2569 02:30</p>' in shown
    assert "ยังไม่เคยมีการลบข้อมูล" in shown and "ไม่มีเรื่องของสำนักงานของคุณที่ระงับการลบข้อมูลตามกฎหมาย" in shown
    assert f'href="{PAGE}" aria-current="page"' in shown  # the nav's link, for admins
    set_locale(client := _admin(app, world), "en")
    shown = text(fetch(client, PAGE))
    assert "Reporter&#39;s number: erased 30 days after the callback is closed" in shown
    assert '<p class="next-purge">4 Dec 2026 02:30</p>' in shown


@pytest.mark.parametrize("username", ["op50", "head50", "agent", "action50"])
def test_everyone_else_is_refused_and_has_no_link(app: Flask, world: World, username: str) -> None:
    client = as_user(app, world, username)
    refused = fetch(client, PAGE)
    assert refused.status_code == 403 and "ความเป็นส่วนตัวและการเก็บรักษาข้อมูล" not in text(refused)
    assert "หน้านี้" in text(refused) or "สำนักงาน" in text(refused)  # the console's Thai error page
    assert PAGE not in text(fetch(client, "/console/"))


def test_signed_out_goes_to_the_sign_in_page(app: Flask, world: World) -> None:
    response = app.test_client().get(PAGE)
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]


def test_the_holds_shown_are_the_admin_s_offices_only(app: Flask, world: World) -> None:
    _hold(app, world, "in_action_50", "head50")
    _hold(app, world, "district_5001", "head50")  # a district under Chiang Mai
    _hold(app, world, "routed_10", "op10")  # Bangkok's: not admin50's to see
    shown = text(fetch(_admin(app, world), PAGE))
    for key, seen in (("in_action_50", True), ("district_5001", True), ("routed_10", False)):
        case_id = world.cases[key]
        assert (f'id="held-{case_id}"' in shown) is seen, key
        assert (f'href="/console/cases/{case_id}"' in shown) is seen, key
    assert "ประเสริฐ หัวหน้า" in shown and "4 ธ.ค. 2569 02:29" in shown  # by whom, since when
    assert "สอบสวน" not in shown  # the reason stays on the case's page


def test_the_last_purge_s_time_and_counts_by_kind(app: Flask, world: World) -> None:
    later = NOW + timedelta(days=4000)
    RetentionSweep(get_database(app), retention_settings(app), None, clock=lambda: later).sweep()
    shown = text(fetch(_admin(app, world), PAGE))
    assert "ยังไม่เคยมีการลบข้อมูล" not in shown
    assert "เสร็จเมื่อ 16 พ.ย. 2580 02:29" in shown  # 4000 days on, Buddhist Era
    counts = shown.split('class="plain purge-counts"')[1].split("</table>")[0]
    assert "<td>เรื่องร่าง</td><td>2</td>" in counts  # the seed's two drafts
    assert "<td>เบอร์ผู้แจ้ง</td>" in counts and "<td>เสียงบันทึก</td>" in counts
    assert "<td>ไฟล์เสียงบันทึกที่ลบ</td>" in counts and "<td>สำเนาที่ลบจากผู้ให้บริการโทรศัพท์</td><td>0</td>" in counts
