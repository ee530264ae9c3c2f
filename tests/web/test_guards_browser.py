"""The "no case left alone" guards (issue 14, item 3) walked in a real headless Chromium, on a wide screen and
a phone, axe-core on each page: SC-Action's resolve is refused while the reporter still waits for a call back,
then closing the call back with its reason resolves; an agent routing to a district without an SC-Operator is
offered the province's office and sends it there with one click."""

from __future__ import annotations

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect

from app import get_database
from cases.callbacks import callback_settings, open_callback
from cases.models import Case
from infra.clock import utcnow
from tests.web.axe import assert_accessible
from tests.web.conftest import SIZES, World
from tests.web.test_console_browser import open_case, signed_in, state

OUTCOME = "ครูประจำชั้นดูแลแล้ว เหตุยุติ"
NO_CALL_NEEDED = "ผู้แจ้งโทรเข้ามาเองและแจ้งว่าไม่ต้องโทรกลับ"
CHOM_THONG = "5002"  # a Chiang Mai district with no SC-Operator in seed_console


def with_open_callback(app: Flask, world: World, key: str) -> int:
    """The seeded case with a call back waiting (seed_console opens none)."""
    with get_database(app).session() as session:
        case = session.get_one(Case, world.cases[key])
        open_callback(session, case, callback_settings(app), utcnow())
        session.commit()
    return world.cases[key]


@pytest.mark.parametrize("size", SIZES)
def test_resolving_is_refused_while_a_call_back_waits_then_closing_it_with_a_reason_resolves(
    browser: Browser, world: World, app: Flask, size: str
) -> None:
    case_id = with_open_callback(app, world, "in_action_50")
    with signed_in(browser, world, "action50", SIZES[size]) as action:
        open_case(action, world, case_id)
        expect(action.locator("#resolve-form .resolve-callback")).to_be_visible()
        action.fill("#outcome-text", OUTCOME)
        action.locator("#resolve-form button.primary").click()
        refusal = action.locator(".flash-error")
        expect(refusal).to_be_visible()
        expect(refusal).to_contain_text("ผู้แจ้งยังรอการโทรกลับอยู่")
        expect(action.locator(".flash-ok")).to_have_count(0)
        assert action.url.endswith(f"/console/cases/{case_id}#callback")
        assert state(action) == "in_action"
        assert_accessible(action, "the refused resolve")

        action.fill("#outcome-text", OUTCOME)
        action.locator("#resolve-form input[name=close_callback]").check()
        action.fill("#resolve-callback-reason", NO_CALL_NEEDED)
        action.locator("#resolve-form button.primary").click()
        expect(action.locator(".flash-ok")).to_have_count(2)  # resolved, and the call back closed
        expect(action.locator(".flash-error")).to_have_count(0)
        assert state(action) == "resolved"
        expect(action.locator("#actions > p.pre")).to_have_text(OUTCOME)
        expect(action.locator("#callback")).to_contain_text("ปิดโดยไม่ได้โทร")
        expect(action.locator("#timeline")).to_contain_text(NO_CALL_NEEDED)
        assert_accessible(action, "the case resolved with its call back closed")


@pytest.mark.parametrize("size", SIZES)
def test_routing_to_a_district_without_an_operator_offers_the_province_taken_in_one_click(
    browser: Browser, world: World, size: str
) -> None:
    case_id = world.cases["draft_50"]
    with signed_in(browser, world, "agent", SIZES[size]) as agent:
        open_case(agent, world, case_id)
        agent.select_option("#route-province", "50")
        agent.select_option("#route-district", CHOM_THONG)
        agent.locator(f"form[action$='/cases/{case_id}/route']:not(.offer) button").click()
        expect(agent.locator(".flash-error")).to_contain_text("ไม่มี SC-Operator")
        offer = agent.locator("#route-offer")
        expect(offer).to_be_visible()
        expect(offer).to_contain_text("จังหวัดเชียงใหม่")
        assert state(agent) == "draft"
        assert_accessible(agent, "the offer of the office above")

        offer.locator("button").click()  # the one click: nothing to choose again
        expect(agent.locator(".flash-ok")).to_be_visible()
        expect(agent.locator(".flash-error")).to_have_count(0)
        assert state(agent) == "routed"
        expect(agent.locator("#timeline")).to_contain_text("ส่งเรื่องถึงสำนักงาน")
        expect(agent.locator("#route-offer")).to_have_count(0)
        assert_accessible(agent, "the case routed to the office offered")
