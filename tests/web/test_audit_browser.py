"""The audit trail in a real headless Chromium: an operator's reads and edits, read back by the office admin.

The SC-Operator opens a case, plays its recording and rewrites its summary (the earlier one stays, under
"earlier versions"); the office's admin finds the case by its reference from the header's link, reads who
did what with Buddhist Era dates, and follows the operator's name to their recent actions. Screenshots
go to the test's folder and /tmp/browser-shots/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.web.conftest import World
from tests.web.test_console_browser import SHOTS, check_years, open_case, play_recording, signed_in, submit

FIRST = "นักเรียนถูกรุ่นพี่รังแกหลังเลิกเรียน"
SECOND = "นักเรียนชั้น ม.2 ถูกรุ่นพี่รังแกทุกวันหลังเลิกเรียน ผู้แจ้งขอให้ติดต่อกลับ"


def test_an_admin_reads_who_opened_played_and_rewrote_a_case(
    browser: Browser, world: World, tmp_path: Path
) -> None:
    case_id = world.cases["routed_50"]
    operator = world.member_names["op50"]
    with signed_in(browser, world, "op50") as page:
        expect(page.locator("a[href='/console/audit']")).to_have_count(0)  # case work, not audit work
        audio: list[str] = []
        page.on("request", lambda r: audio.append(r.url) if "/audio" in r.url else None)
        open_case(page, world, case_id)
        page.wait_for_load_state("networkidle")
        assert audio == []  # preload="none": nothing is fetched (nor audited) until play is pressed
        play_recording(page)
        reference = page.locator("h1 .ref").inner_text()
        for summary in (FIRST, SECOND):
            page.fill("#summary-text", summary)
            page.select_option("#summary-category", "violence")
            submit(page, f"form[action$='/cases/{case_id}/summary']")
        expect(page.locator("#summary .facts .pre")).to_have_text(SECOND)
        versions = page.locator("#summary-versions")
        expect(versions.locator("li .pre")).to_be_hidden()  # folded until asked for
        versions.locator("summary").click()
        expect(versions.locator("li .pre")).to_have_text([FIRST])
        expect(versions.locator("li .meta")).to_contain_text(f"ฉบับที่ 1 โดย {operator}")
        page.goto(world.base + "/console/audit")
        expect(page.locator("h1")).to_have_text("ไม่มีสิทธิ์เข้าถึง")  # 403

    with signed_in(browser, world, "admin50") as page:
        page.click("nav a[href='/console/audit']")
        expect(page.locator("h1")).to_have_text("บันทึกการตรวจสอบ")
        page.fill("#audit-reference", reference)
        page.locator("#audit-case button").click()
        expect(page).to_have_url(f"{world.base}/console/audit/cases/{case_id}")
        expect(page.locator("h1")).to_have_text(f"บันทึกการตรวจสอบของเรื่อง {reference}")
        trail = page.locator("table.audit-trail tbody")
        for action, words in (
            ("case_viewed", "เปิดดูเรื่อง"),
            ("recording_played", "เปิดฟังเสียงบันทึก"),
            ("summarised", "สรุปเหตุการณ์"),
        ):
            row = trail.locator(f"tr.action-{action}").last
            expect(row).to_contain_text(words)
            expect(row).to_contain_text(operator)
        expect(trail.locator("tr.action-summarised").last).to_contain_text("ฉบับที่ 2")
        expect(trail).not_to_contain_text(SECOND)  # the trail says that, not what: no reporter's words
        check_years(trail.locator("td.when").all_inner_texts(), "th")
        page.screenshot(path=str(tmp_path / "audit-case-th.png"), full_page=True)

        trail.locator(f"tr.action-case_viewed a:has-text('{operator}')").first.click()
        expect(page.locator("h1")).to_have_text(f"การดำเนินการล่าสุดของ {operator}")
        mine = page.locator("table.audit-trail tbody")
        expect(mine.locator("tr.action-recording_played a.ref")).to_have_text(reference)
        check_years(mine.locator("td.when").all_inner_texts(), "th")
        page.screenshot(path=str(tmp_path / "audit-user-th.png"), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for shot in sorted(tmp_path.glob("audit-*.png")):
        shutil.copy(shot, SHOTS / shot.name)
