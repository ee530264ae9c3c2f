"""The dashboard (issue 14, item 2) walked in a real headless Chromium by a head, on a wide screen and a
phone: the menu link, a period chosen with the form's date fields, and the figures downloaded as a CSV that
Excel reads as UTF-8 (a BOM, then Thai words); axe-core on each page."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from infra.config import Config
from tests.web.axe import assert_accessible
from tests.web.conftest import SIZES, World
from tests.web.test_console_browser import signed_in

# Chiang Mai's cases in seed_console, opened three days ago (its draft is the call centre's, not counted).
CHIANG_MAI_CASES = 6
VIOLENCE = "ความรุนแรง"  # routed_50, in_action_50 and district_5001
BOM = b"\xef\xbb\xbf"


def show_period(page: Page, first: date, last: date) -> None:
    """Type the period into the form's date fields and press Show: the page reloads with it."""
    page.fill("#d-from", first.isoformat())
    page.fill("#d-to", last.isoformat())
    page.locator("form[action$='/console/dashboard'] button").click()
    expect(page).to_have_url(re.compile(rf"from={first.isoformat()}&to={last.isoformat()}"))
    expect(page.locator("#d-from")).to_have_value(first.isoformat())
    assert_accessible(page, f"the dashboard from {first} to {last}")


def violence_cell(page: Page) -> Locator:
    """The count beside "violence" in the first panel's table (cases by hazard group)."""
    return page.locator(".panel").first.locator("tr", has_text=VIOLENCE).locator("td")


def counted(page: Page) -> str:
    return page.locator(".page-head .muted").inner_text()


@pytest.mark.parametrize("size", SIZES)
def test_a_head_chooses_the_period_and_downloads_the_figures_as_csv(
    browser: Browser, world: World, config: Config, size: str, tmp_path: Path
) -> None:
    today = datetime.now(config.timezone).date()
    with signed_in(browser, world, "head50", SIZES[size]) as head:
        head.locator("nav.main-nav a", has_text="แดชบอร์ด").click()
        expect(head).to_have_url(f"{world.base}/console/dashboard")
        expect(head.locator("nav.main-nav a[aria-current=page]")).to_have_text("แดชบอร์ด")
        assert counted(head).endswith(f": {CHIANG_MAI_CASES} เรื่อง"), counted(head)  # the last 30 days
        assert_accessible(head, "the dashboard")

        # A period long before the seeded calls: nothing counted.
        show_period(head, today - timedelta(days=400), today - timedelta(days=300))
        assert counted(head).endswith(": 0 เรื่อง"), counted(head)
        expect(violence_cell(head)).to_have_text("0")

        first, last = today - timedelta(days=7), today
        show_period(head, first, last)
        assert counted(head).endswith(f": {CHIANG_MAI_CASES} เรื่อง"), counted(head)
        expect(violence_cell(head)).to_have_text("3")

        with head.expect_download() as started:
            head.locator("p.exports a", has_text="CSV").first.click()
        download = started.value
        assert download.failure() is None
        assert download.suggested_filename == f"figures-{first:%Y%m%d}-{last:%Y%m%d}.csv"
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        body = saved.read_bytes()
        assert body.startswith(BOM), body[:16]
        rows = list(csv.reader(io.StringIO(body[len(BOM) :].decode("utf-8"))))
        assert [VIOLENCE, "3"] in rows, rows
        assert re.search("[\u0e00-\u0e7f]", rows[0][0]), rows[0]  # the first heading is Thai too
        # The page stays where it was, still the chosen period.
        expect(head).to_have_url(re.compile(rf"from={first.isoformat()}"))
        assert_accessible(head, "the dashboard after the download")
