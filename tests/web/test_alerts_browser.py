"""Workflow alerts in a real headless Chromium: an agent routes a case in one session, and the SC-Operator's
open queue in another shows the new notification and "new items – reload" without being reloaded, on a wide
screen (1366×900) and a phone (390×844)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from console import live
from tests.web.axe import assert_accessible
from tests.web.conftest import SIZES, World
from tests.web.test_console_browser import signed_in, submit


@pytest.mark.parametrize("size", SIZES)
def test_a_routed_case_shows_on_the_operators_open_page_without_a_reload(
    browser: Browser, world: World, monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    monkeypatch.setattr(live, "POLL_SECONDS", 1)  # the page asks every second here, not every 20
    case_id = world.cases["draft_50"]
    with signed_in(browser, world, "op50", SIZES[size]) as operator:
        notice = operator.locator("#live")
        badge = operator.locator("#nav-notifications .badge")
        expect(notice).to_be_hidden()
        expect(badge).to_have_count(0)
        # A mark on this very document: gone if the page were loaded again.
        operator.evaluate("window.hotlineSamePage = true")

        with signed_in(browser, world, "agent", SIZES[size]) as agent:
            agent.goto(f"{world.base}/console/cases/{case_id}")
            agent.select_option("#route-province", "50")
            submit(agent, f"form[action$='/cases/{case_id}/route']")
            # The agent's own page: the agent is not told of their own routing.
            agent.wait_for_timeout(2500)
            expect(agent.locator("#live")).to_be_hidden()

        expect(badge).to_have_text("1")
        expect(badge).to_have_attribute("aria-label", "ยังไม่ได้อ่าน 1 รายการ")
        expect(notice).to_be_visible()
        expect(notice).to_have_text("มีเรื่องใหม่ – โหลดใหม่")
        assert_accessible(operator, "the page with the live notice and badge")
        assert operator.evaluate("window.hotlineSamePage === true")

        notice.locator("a").click()  # the notice's link loads the page afresh: the case is in the queue
        expect(operator.locator(f"a[href$='/console/cases/{case_id}']").first).to_be_visible()
        assert operator.evaluate("window.hotlineSamePage === undefined")
        expect(operator.locator("#live")).to_be_hidden()
