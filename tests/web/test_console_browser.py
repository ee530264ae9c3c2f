"""The console in a real headless Chromium: one case from the phone line to its resolution, in both languages.

Each person signs in in a fresh browser context (their own cookies), works only through the pages'
forms and buttons, and the case page is read back after every step. Screenshots of the queue and the
case page in Thai and in English are kept in the test's folder and copied to /tmp/browser-shots/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.web.axe import assert_accessible
from tests.web.conftest import World

SHOTS = Path("/tmp/browser-shots")  # noqa: S108 - a fixed place to look at the screenshots by hand
CORRECTED = "มีนักเรียนถูกรุ่นพี่รังแกที่โรงเรียนทุกวัน (แก้ไขโดยเจ้าหน้าที่)"
SUMMARY = "นักเรียนชั้น ม.2 ถูกรุ่นพี่รังแกทุกวันหลังเลิกเรียน ผู้แจ้งขอให้ติดต่อกลับ"
ACTION = "โทรหาผู้อำนวยการโรงเรียนแล้ว นัดประชุมครูที่ปรึกษา"
OUTCOME = "ครูที่ปรึกษาดูแลนักเรียนใกล้ชิด เหตุยุติแล้ว"
TIMEOUT_MS = 15_000


@contextmanager
def signed_in(
    browser: Browser, world: World, username: str, viewport: ViewportSize | None = None
) -> Iterator[Page]:
    """A fresh browser context (no cookies from anyone else), signed in through the login form."""
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}, locale="th-TH")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(world.base + "/console/")
        expect(page).to_have_url(re.compile(r"/console/login"))
        page.fill("#username", username)
        page.fill("#password", world.password)
        page.click("form[action$='/console/login'] button")
        expect(page).to_have_url(world.base + "/console/")
        expect(page.locator(".who")).to_have_text(world.member_names[username])
        assert_accessible(page, f"{username}'s queue")
        yield page
        assert errors == [], f"script errors on {username}'s pages: {errors}"
    finally:
        context.close()


def open_case(page: Page, world: World, case_id: int) -> None:
    page.goto(f"{world.base}/console/cases/{case_id}")
    expect(page.locator("h1 .ref")).to_be_visible()
    assert_accessible(page, f"case {case_id}")


def submit(page: Page, form: str) -> None:
    """Press the form's (first) button and expect the console's success message, no error."""
    page.locator(form).locator("button").first.click()
    expect(page.locator(".flash-ok")).to_be_visible()
    expect(page.locator(".flash-error")).to_have_count(0)
    assert_accessible(page, f"the page after {form}")  # the success message's colours too


def state(page: Page) -> str:
    classes = page.locator("h1 .state").get_attribute("class") or ""
    return next(c.removeprefix("state-") for c in classes.split() if c.startswith("state-"))


def play_recording(page: Page) -> None:
    """The <audio> really loads (Range requests answered 206) and chromium decodes and plays the WAV."""
    audio = page.locator("audio")
    expect(audio).to_have_count(1)
    outcome = audio.evaluate(
        """async (a) => {
            a.muted = true;  // muted playback needs no user gesture under the autoplay policy
            try { await a.play(); } catch (e) { return 'play failed: ' + e.name + ': ' + e.message; }
            const t0 = performance.now();
            while (a.currentTime <= 0 && !a.ended && !a.error && performance.now() - t0 < 10000) {
                await new Promise((r) => setTimeout(r, 50));
            }
            return {time: a.currentTime, ready: a.readyState, error: a.error && a.error.code,
                    duration: a.duration, ended: a.ended};
        }"""
    )
    assert isinstance(outcome, dict), outcome
    assert outcome["error"] is None, outcome
    assert outcome["ready"] >= 2, outcome
    assert outcome["time"] > 0 or outcome["ended"], outcome
    assert abs(outcome["duration"] - 1.0) < 0.05, outcome  # seed recordings are a one-second tone


def test_a_case_from_the_phone_line_to_resolution(browser: Browser, world: World, tmp_path: Path) -> None:
    case_id = world.cases["draft_central"]
    rec_id = world.recordings["draft_central"]
    case_link = f"a.ref[href='/console/cases/{case_id}']"

    # ---- the call-centre agent: queue, recording, transcript, routing ---------------------------------
    with signed_in(browser, world, "agent") as page:
        expect(page.locator(case_link)).to_be_visible()
        audio_statuses: list[int] = []
        page.on(
            "response",
            lambda r: audio_statuses.append(r.status) if f"/recordings/{rec_id}/audio" in r.url else None,
        )
        page.click(case_link)
        expect(page).to_have_url(f"{world.base}/console/cases/{case_id}")
        assert state(page) == "draft"
        play_recording(page)
        assert audio_statuses and set(audio_statuses) <= {200, 206}, audio_statuses
        assert 206 in audio_statuses, f"the player's Range requests were not answered 206: {audio_statuses}"

        page.fill(f"#correction-{rec_id}", CORRECTED)
        submit(page, f"form[action$='/recordings/{rec_id}/correction']")
        expect(page.locator(f"#recording-{rec_id} .transcript p.words").nth(1)).to_have_text(CORRECTED)
        # The machine transcript stays beside the correction.
        expect(page.locator(f"#recording-{rec_id} .transcript p.words").first).to_contain_text("รังแก")

        page.select_option("#route-province", "50")
        submit(page, f"form[action$='/cases/{case_id}/route']")
        assert state(page) == "routed"
        expect(page.locator("#timeline")).to_contain_text("ส่งเรื่องถึงสำนักงาน")

    # ---- the Chiang Mai SC-Operator: summary, and a forwarding proposed to the committee --------------
    with signed_in(browser, world, "op50") as page:
        expect(page.locator(case_link)).to_be_visible()
        page.click(case_link)
        expect(page.locator(f"#recording-{rec_id} .transcript p.words").nth(1)).to_have_text(CORRECTED)
        page.fill("#summary-text", SUMMARY)
        page.select_option("#summary-category", "violence")
        submit(page, f"form[action$='/cases/{case_id}/summary']")
        expect(page.locator("#summary .facts .pre")).to_have_text(SUMMARY)

        page.select_option("#propose-target", f"committee:{world.committee}")
        page.fill("#propose-note", "ขอให้คณะทำงานติดตามด่วน")
        submit(page, f"form[action$='/cases/{case_id}/proposals']")
        expect(page.locator(".proposal-pending")).to_have_count(1)
        # Only a head may decide: the operator sees no approve button.
        expect(page.locator("button[name=decision]")).to_have_count(0)

    # ---- the head SC-Operator approves ----------------------------------------------------------------
    with signed_in(browser, world, "head50") as page:
        page.goto(world.base + "/console/approvals")
        expect(page.locator(f"a[href*='/console/cases/{case_id}']").first).to_be_visible()
        open_case(page, world, case_id)
        page.locator("button[name=decision][value=approve]").click()
        expect(page.locator(".flash-ok")).to_be_visible()
        expect(page.locator(".proposal-approved")).to_have_count(1)
        assert state(page) == "assigned"

    # ---- every committee member acknowledges for themselves -------------------------------------------
    for member in ("action50", "op50b"):
        with signed_in(browser, world, member) as page:
            page.goto(world.base + "/console/assignments")
            expect(page.locator(f"a[href*='/console/cases/{case_id}']").first).to_be_visible()
            open_case(page, world, case_id)
            submit(page, f"form[action$='/cases/{case_id}/acknowledge']")
            expect(page.locator(f"form[action$='/cases/{case_id}/acknowledge']")).to_have_count(0)

    # ---- SC-Action: an action, the outcome, and the screenshots in both languages ---------------------
    with signed_in(browser, world, "action50") as page:
        open_case(page, world, case_id)
        assert state(page) == "in_action"
        expect(page.locator("#assignment .tag-approved")).to_have_count(2)
        page.fill("#action-text", ACTION)
        submit(page, f"form[action$='/cases/{case_id}/actions']")
        expect(page.locator(".actions-list .pre")).to_have_text(ACTION)
        page.fill("#outcome-text", OUTCOME)
        submit(page, f"form[action$='/cases/{case_id}/resolve']")
        assert state(page) == "resolved"
        expect(page.locator("#actions > p.pre")).to_have_text(OUTCOME)
        expect(page.locator("form[action$='/resolve']")).to_have_count(0)

        shots = tmp_path / "shots"
        shots.mkdir()
        # Thai first (the seeded users' language), then the toggle in the header to English.
        screenshots(page, world, case_id, "th", shots)
        page.locator("button[name=locale][value=en]").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        screenshots(page, world, case_id, "en", shots)

        timeline = page.locator("#timeline li").all_inner_texts()
        expected = [
            "Case opened from the phone line",
            "Transcript corrected",
            "Routed to an office",
            "Summary written",
            "Forwarding proposed",
            "Forwarding approved",
            "Acknowledged",
            "Acknowledged",
            "Action recorded",
            "Resolved",
        ]
        found = [next((e for e in expected if e in line), line) for line in timeline]
        assert found == expected, timeline
        names = world.member_names
        assert names["agent"] in timeline[1] and names["agent"] in timeline[2]
        assert names["op50"] in timeline[3] and names["op50"] in timeline[4]
        assert names["head50"] in timeline[5]
        assert {names["action50"], names["op50b"]} == {
            n for n in (names["action50"], names["op50b"]) for line in timeline[6:8] if n in line
        }
        assert names["action50"] in timeline[8] and names["action50"] in timeline[9]
    SHOTS.mkdir(parents=True, exist_ok=True)
    for shot in sorted(shots.iterdir()):
        shutil.copy(shot, SHOTS / shot.name)


def screenshots(page: Page, world: World, case_id: int, lang: str, folder: Path) -> None:
    """The queue (all states, so the resolved case is listed) and the case page, with their dates checked."""
    page.goto(world.base + "/console/?state=all")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator(f"a.ref[href='/console/cases/{case_id}']")).to_be_visible()
    check_years(page.locator("table.cases td.nowrap").all_inner_texts(), lang)
    assert_accessible(page, f"the queue in {lang}")
    page.screenshot(path=str(folder / f"queue-{lang}.png"), full_page=True)
    open_case(page, world, case_id)
    check_years(page.locator("#timeline .when").all_inner_texts(), lang)
    page.screenshot(path=str(folder / f"case-{lang}.png"), full_page=True)


def check_years(dates: list[str], lang: str) -> None:
    """Thai pages give Buddhist Era years (25xx), English ones Gregorian years (20xx)."""
    assert dates
    for text in dates:
        if not re.search(r"\d{4}", text):
            continue  # an age such as "3 d 2 h"
        years = re.findall(r"\b(\d{4})\b", text)
        if lang == "th":
            assert any(y.startswith("25") for y in years), text
            assert not any(y.startswith("20") for y in years), text
        else:
            assert any(y.startswith("20") for y in years), text
            assert not any(y.startswith("25") for y in years), text
