"""axe-core finds no accessibility violation (contrast 4.5:1 included) on the console's main pages, signed
out and signed in, on a wide screen (1366×900) and on a phone (390×844)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web.axe import assert_accessible, describe, violations
from tests.web.conftest import World

SIZES = {"wide": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
TIMEOUT_MS = 15_000
WORDS = "%E0%B8%A3%E0%B8%B1%E0%B8%87%E0%B9%81%E0%B8%81"  # รังแก, in the seeded transcripts


def sign_in(page: Page, world: World, username: str) -> None:
    page.goto(world.base + "/console/login")
    assert_accessible(page, "the sign-in page")
    page.fill("#username", username)
    page.fill("#password", world.password)
    page.click("form[action$='/console/login'] button")
    expect(page).to_have_url(world.base + "/console/")


def check_pages(browser: Browser, world: World, size: str, username: str, pages: dict[str, str]) -> None:
    """Each page as `username` sees it, loaded (200) and checked; every page's violations are reported."""
    context = browser.new_context(viewport=SIZES[size], locale="th-TH")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, world, username)
        found = {}
        for name, path in pages.items():
            response = page.goto(world.base + path)
            assert response is not None and response.status == 200, (name, response and response.status)
            expect(page.locator("main")).to_be_visible()
            found[name] = violations(page)
        assert not any(found.values()), "\n".join(
            f"axe-core on the {name} at {size} ({username}):\n{describe(v)}" for name, v in found.items() if v
        )
    finally:
        context.close()


@pytest.mark.parametrize("size", sorted(SIZES))
def test_a_heads_pages_have_no_axe_violations(browser: Browser, world: World, size: str) -> None:
    check_pages(
        browser,
        world,
        size,
        "head50",
        {
            "queue": "/console/",
            "queue, every state": "/console/?state=all",
            "case page with a proposal to decide": f"/console/cases/{world.cases['proposed_50']}",
            "notifications": "/console/notifications",
            "dashboard": "/console/dashboard",
            "search": "/console/search/",
            "search results": f"/console/search/?q={WORDS}",
            "approvals": "/console/approvals",
            "print view": f"/console/cases/{world.cases['assigned_50']}/print",
            "own phone": "/console/me",
            "failed deliveries": "/console/notifications/failed",
        },
    )


@pytest.mark.parametrize("size", sorted(SIZES))
def test_the_routing_and_forwarding_forms_have_no_axe_violations(
    browser: Browser, world: World, size: str
) -> None:
    # The agent's case page carries the routing form (province, district, hazard group) ...
    draft = world.cases["draft_50"]
    check_pages(browser, world, size, "agent", {"case page to route": f"/console/cases/{draft}"})
    # ... the SC-Operator's, the summary form and the grouped forwarding targets.
    check_pages(
        browser,
        world,
        size,
        "op50",
        {
            "case page to forward": f"/console/cases/{world.cases['routed_50']}",
            "assignments": "/console/assignments",
        },
    )


@pytest.mark.parametrize("size", sorted(SIZES))
def test_an_office_admins_pages_have_no_axe_violations(browser: Browser, world: World, size: str) -> None:
    check_pages(
        browser,
        world,
        size,
        "admin50",
        {"privacy": "/console/privacy", "offices": "/console/offices", "audit": "/console/audit"},
    )


def test_the_check_fails_on_the_old_signed_in_name_colours(browser: Browser) -> None:
    """The check is live: the console's old link blue on its navy bar (1.6:1) is reported as a violation."""
    page = browser.new_page()
    try:
        page.set_content(
            '<!doctype html><html lang="th"><head><title>t</title></head><body><main><h1>คิว</h1>'
            '<header style="background:#123a6b"><a href="/me" style="color:#0c59a6">ประเสริฐ หัวหน้า</a>'
            "</header></main></body></html>"
        )
        found = violations(page)
        assert [v["id"] for v in found] == ["color-contrast"], describe(found)
        assert "1.6" in describe(found)
    finally:
        page.close()


def test_the_district_chosen_by_name_in_the_browser_with_the_refusals_checked_too(
    browser: Browser, world: World
) -> None:
    """The agent picks the district by its name; the refusal and the offer of the office above, and the
    routed page, are checked by axe-core as well (error and warning colours)."""
    context = browser.new_context(viewport=SIZES["wide"], locale="th-TH")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    case_id = world.cases["draft_50"]
    route = f"form[action$='/cases/{case_id}/route']:not(.offer) button"
    try:
        sign_in(page, world, "agent")
        page.goto(f"{world.base}/console/cases/{case_id}")
        mueang = page.locator("#route-district option[value='5001']").inner_text().strip()
        assert "เมืองเชียงใหม่" in mueang and "5001" not in mueang  # a name, not a code
        # Bangkok with a Chiang Mai district: refused.
        page.select_option("#route-province", "10")
        page.select_option("#route-district", label=mueang)
        page.locator(route).click()
        expect(page.locator(".flash-error")).to_be_visible()
        assert_accessible(page, "the refused routing")
        # Chom Thong has no SC-Operator: the province is offered instead.
        page.select_option("#route-province", "50")
        page.select_option("#route-district", "5002")
        page.locator(route).click()
        expect(page.locator("#route-offer")).to_be_visible()
        assert_accessible(page, "the offer of the office above")
        page.select_option("#route-district", label=mueang)
        page.locator(route).click()
        expect(page.locator(".flash-ok")).to_be_visible()
        expect(page.locator("h1 .state")).to_have_class(re.compile(r"\bstate-routed\b"))
        assert_accessible(page, "the routed case")
    finally:
        context.close()
