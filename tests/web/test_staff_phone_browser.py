"""A staff member verifies their own phone in Chromium: the number, the code the Twilio stand-in received.

The case page offers no call-back button while the phone is unverified, and offers it once verified.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, expect

from app import get_database
from cases import callbacks
from cases.models import Case
from cases.staff import User
from infra.config import Config
from infra.crypto import FieldCipher, mask_phone
from telephony.simulator.media_server import MediaServer
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, make_config
from tests.web.conftest import World
from tests.web.test_console_browser import signed_in


@pytest.fixture
def twilio() -> Iterator[MediaServer]:
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        yield media


@pytest.fixture
def config(tmp_path: Path, port: int, twilio: MediaServer) -> Config:
    return make_config(
        tmp_path, env={"PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "TWILIO_API_BASE": twilio.base_url}
    )


@pytest.fixture
def with_callback(app: Flask, world: World, config: Config) -> int:
    """Chiang Mai's routed case, with a number and an open call-back (as test_callback_bridge makes it)."""
    cipher = FieldCipher(config.data_key)
    with get_database(app).session() as session:
        case = session.get(Case, world.cases["routed_50"])
        assert case is not None
        case.callback_number_enc = cipher.encrypt("+66861234567")
        case.callback_number_masked = mask_phone("+66861234567")
        callbacks.open_callback(session, case, callbacks.callback_settings(app), datetime.now(UTC))
        # op50's phone was set before verification existed (the migration leaves it unverified).
        op50 = session.get(User, world.users["op50"])
        assert op50 is not None
        op50.phone = "+66891112222"
        return case.id


def test_a_phone_is_verified_with_the_code_sent_to_it(
    browser: Browser, world: World, twilio: MediaServer, with_callback: int
) -> None:
    case_page = f"{world.base}/console/cases/{with_callback}"
    with signed_in(browser, world, "op50") as page:
        page.goto(case_page)
        expect(page.locator("#verify-phone-hint")).to_be_visible()
        expect(page.locator("#call-back-button")).to_have_count(0)

        page.locator("#verify-phone-hint a").click()
        expect(page.locator("#phone-unverified")).to_be_visible()
        page.fill("#profile-phone", "089 111 2222")
        page.locator("#phone-number-form button").click()
        expect(page.locator(".flash-ok")).to_contain_text("ส่งรหัสทาง SMS")
        [sms] = twilio.messages()
        assert sms.to == "+66891112222"
        code = re.search(r"\b(\d{6})\b", sms.body)
        assert code
        expect(page.locator("#phone-code-form label")).to_contain_text("+66 8x xxx x222")

        page.fill("#profile-code", "000000" if code.group(1) != "000000" else "111111")
        page.locator("#phone-code-form button").click()
        expect(page.locator(".flash-error")).to_contain_text("รหัสไม่ถูกต้อง")
        page.fill("#profile-code", code.group(1))
        page.locator("#phone-code-form button").click()
        expect(page.locator(".flash-ok")).to_contain_text("ยืนยันและบันทึก")
        expect(page.locator("#phone-verified")).to_be_visible()

        page.goto(case_page)
        expect(page.locator("#call-back-button")).to_be_visible()
