"""Withdraw, reassign and reopen (issue 14, item 6) in a real headless Chromium: the proposer withdraws from
the case page, the head reassigns a case being worked and reopens a resolved one, each with a reason, and
the timeline says so in Thai."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.web.conftest import SIZES, World
from tests.web.test_console_browser import signed_in, state, submit


@pytest.mark.parametrize("size", SIZES)
def test_a_proposer_withdraws_and_a_head_reassigns_and_reopens(
    browser: Browser, world: World, size: str
) -> None:
    """Every page on the way is checked by axe-core (signed_in and submit), on a wide screen and a phone."""
    with signed_in(browser, world, "op50", SIZES[size]) as operator:
        operator.goto(f"{world.base}/console/cases/{world.cases['proposed_50']}")
        submit(operator, "form[action$='/withdraw']")
        assert state(operator) == "routed"
        expect(operator.locator("#timeline")).to_contain_text("ถอนข้อเสนอส่งต่อ")

    with signed_in(browser, world, "head50", SIZES[size]) as head:
        head.goto(f"{world.base}/console/cases/{world.cases['in_action_50']}")
        head.locator("#reassign-target").select_option(label="วิภา ตั้งใจ")
        head.fill("#reassign-reason", "มานะลาป่วย")
        submit(head, "#reassign-form")
        assert state(head) == "assigned"
        expect(head.locator("#assignment")).to_contain_text("วิภา ตั้งใจ")
        expect(head.locator("#timeline")).to_contain_text("เปลี่ยนผู้รับผิดชอบ SC-Action")

        head.goto(f"{world.base}/console/cases/{world.cases['resolved_50']}")
        head.fill("#reopen-reason", "ผู้ปกครองแจ้งว่ายังเกิดเหตุอยู่")
        submit(head, "#reopen form")
        assert state(head) == "in_action"
        expect(head.locator("#timeline")).to_contain_text("ผู้ปกครองแจ้งว่ายังเกิดเหตุอยู่")
