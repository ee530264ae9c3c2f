"""The queue on a phone (issue 14, item 5), in a real headless Chromium at 390×844: each case is a card
with its reference, state and call-back due time on screen, and nothing scrolls sideways.

The seeded cases get their call backs first (the seed leaves them without), so that the due times show.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from flask import Flask
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from app import get_database
from cases.callbacks import callback_settings, open_callback
from cases.models import Case
from infra.clock import utcnow
from tests.web.axe import assert_accessible
from tests.web.conftest import World

SHOTS = Path("/tmp/browser-shots")  # noqa: S108 - a fixed place to look at the screenshots by hand
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000


def with_callbacks(app: Flask) -> None:
    with get_database(app).session() as session:
        for case in session.scalars(select(Case).order_by(Case.id)):
            open_callback(session, case, callback_settings(app), utcnow())


def sign_in(page: Page, world: World, username: str) -> None:
    page.goto(world.base + "/console/")
    page.fill("#username", username)
    page.fill("#password", world.password)
    page.click("form[action$='/console/login'] button")
    expect(page).to_have_url(world.base + "/console/")


def on_screen(page: Page, selector: str) -> dict[str, float]:
    """The element's box, asserted visible and wholly inside the phone's width."""
    element = page.locator(selector)
    expect(element).to_be_visible()
    box = element.bounding_box()
    assert box is not None, selector
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, (selector, box)
    return box


def test_the_queue_is_cards_on_a_390px_phone_with_state_and_due_in_view(
    browser: Browser, world: World, app: Flask, tmp_path: Path
) -> None:
    with_callbacks(app)
    context = browser.new_context(viewport=PHONE, locale="th-TH", device_scale_factor=1)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, world, "op50")
        rows = page.locator("tr.case-row")
        assert rows.count() >= 3
        assert_accessible(page, "the queue's cards at 390 px")
        shot = tmp_path / "queue-390-th.png"
        page.screenshot(path=str(shot), full_page=True)
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(shot, SHOTS / shot.name)
        # Nothing wider than the screen: the page does not scroll sideways.
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1] == PHONE["width"], widths
        # The column headings give way to labels inside each card.
        expect(page.locator("table.cases thead th").first).not_to_be_in_viewport()
        for i in range(min(rows.count(), 3)):
            card = f"tr.case-row >> nth={i}"
            ref = on_screen(page, f"{card} >> td.cell-ref a.ref")
            state = on_screen(page, f"{card} >> td.cell-state .state")
            due = on_screen(page, f"{card} >> td.callback-cell .due")
            assert ref["y"] < state["y"] < due["y"]  # reference first, then state, then the call back
            assert re.search(r"\d", page.locator(f"{card} >> td.callback-cell .due").inner_text())
            # The reference stays on one line (height of one line of text, not two).
            assert ref["height"] < 2 * 16 * 1.4
        # Overdue and due-soon cards carry their word and icon too (not colour alone).
        for row in page.locator("tr.case-row.urgent-overdue").all():
            expect(row.locator(".urgency-overdue")).to_contain_text("เลยกำหนด")
        assert errors == []
    finally:
        context.close()


def test_on_a_wide_screen_the_queue_stays_a_table(browser: Browser, world: World, app: Flask) -> None:
    with_callbacks(app)
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="th-TH")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, world, "op50")
        expect(page.locator("table.cases thead th").first).to_be_in_viewport()
        assert_accessible(page, "the queue's table at 1366 px")
        ref = page.locator("tr.case-row >> nth=0").locator("td.cell-ref").bounding_box()
        due = page.locator("tr.case-row >> nth=0").locator("td.callback-cell").bounding_box()
        assert ref is not None and due is not None
        assert abs(ref["y"] - due["y"]) < 1 and due["x"] > ref["x"]  # one row, side by side
    finally:
        context.close()
