"""Search (issue 14, item 1) walked in a real headless Chromium by each role, typing into the queue's search
box: a reference with its dash, a Thai word of a summary, a number's last digits through the POST form (never
in an address), and another province's case not found; on a wide screen and a phone, axe-core on each page."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from app import get_database
from cases.models import Case
from cases.reference import display_reference
from infra.config import Config
from infra.crypto import FieldCipher
from tests.web.axe import assert_accessible
from tests.web.conftest import SIZES, World
from tests.web.test_console_browser import signed_in

NO_MATCH = "ไม่มีเรื่องที่ท่านดูได้ตรงกับที่ค้นหา"
SUMMARY_WORD = "รุ่นพี่"  # inside seed_console's summary, written without spaces around it


def reference(app: Flask, world: World, key: str) -> str:
    with get_database(app).session() as session:
        return display_reference(session.get_one(Case, world.cases[key]).reference)


def callback_number(app: Flask, config: Config, world: World, key: str) -> str:
    with get_database(app).session() as session:
        token = session.get_one(Case, world.cases[key]).callback_number_enc
    assert token
    return FieldCipher(config.data_key).decrypt(token)


def search_for(page: Page, typed: str) -> None:
    """Type into the search box (reference or words) and press its button: a GET to the search page."""
    page.fill("#s-q", typed)
    page.locator("form[role=search] button").click()
    expect(page).to_have_url(re.compile(r"/console/search/\?q="))
    expect(page.locator("#s-q")).to_have_value(typed)
    assert_accessible(page, f"the search for {typed!r}")


def open_found(page: Page, ref: str) -> None:
    """Click the case in the results and land on its page."""
    page.locator("table.cases a.ref", has_text=ref).click()
    expect(page.locator("h1 .ref")).to_have_text(ref)
    assert_accessible(page, f"case {ref} opened from the search")


@pytest.mark.parametrize("size", SIZES)
def test_an_agent_finds_a_case_by_its_reference_typed_with_the_dash(
    browser: Browser, world: World, app: Flask, size: str
) -> None:
    ref = reference(app, world, "draft_50")
    assert "-" in ref
    with signed_in(browser, world, "agent", SIZES[size]) as agent:
        search_for(agent, ref)
        expect(agent.locator(".page-head .muted")).to_contain_text("ตรงเงื่อนไข 1 เรื่อง")
        expect(agent.locator("table.cases a.ref")).to_have_text([ref])
        open_found(agent, ref)


@pytest.mark.parametrize("size", SIZES)
def test_an_operator_finds_summarised_cases_by_a_thai_word(
    browser: Browser, world: World, app: Flask, size: str
) -> None:
    summarised = {reference(app, world, k) for k in ("proposed_50", "assigned_50", "in_action_50")}
    not_summarised = reference(app, world, "routed_50")
    with signed_in(browser, world, "op50", SIZES[size]) as operator:
        search_for(operator, SUMMARY_WORD)
        found = set(operator.locator("table.cases a.ref").all_inner_texts())
        assert summarised <= found, found
        assert not_summarised not in found
        open_found(operator, reference(app, world, "in_action_50"))
        expect(operator.locator("#summary")).to_contain_text(SUMMARY_WORD)


@pytest.mark.parametrize("size", SIZES)
def test_a_head_finds_a_case_by_the_last_four_digits_and_they_stay_out_of_every_address(
    browser: Browser, world: World, app: Flask, config: Config, size: str
) -> None:
    ref = reference(app, world, "routed_50")
    digits = callback_number(app, config, world, "routed_50")[-4:]
    with signed_in(browser, world, "head50", SIZES[size]) as head:
        addresses: list[str] = []
        head.on("request", lambda r: addresses.append(r.url))
        head.fill("#s-digits", digits)
        with head.expect_request(lambda r: r.url.endswith("/console/search/number")) as sent:
            head.locator("form[action$='/console/search/number'] button").click()
        assert sent.value.method == "POST"
        expect(head.locator("table.cases a.ref", has_text=ref)).to_be_visible()
        assert head.url == f"{world.base}/console/search/number"
        assert_accessible(head, "the results of the number search")
        open_found(head, ref)
        assert addresses and not [a for a in addresses if digits in a], addresses


@pytest.mark.parametrize("size", SIZES)
def test_an_office_user_does_not_find_another_provinces_case(
    browser: Browser, world: World, app: Flask, size: str
) -> None:
    chiang_mai, bangkok = reference(app, world, "routed_50"), reference(app, world, "routed_10")
    with signed_in(browser, world, "op10", SIZES[size]) as bangkok_operator:
        search_for(bangkok_operator, chiang_mai)
        expect(bangkok_operator.locator("main")).to_contain_text(NO_MATCH)
        expect(bangkok_operator.locator("main a.ref")).to_have_count(0)
        search_for(bangkok_operator, SUMMARY_WORD)  # Chiang Mai's summaries: none of them
        expect(bangkok_operator.locator("main")).to_contain_text(NO_MATCH)
        # The same box does find Bangkok's own case.
        search_for(bangkok_operator, bangkok)
        open_found(bangkok_operator, bangkok)
