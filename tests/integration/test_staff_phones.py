"""Staff phones are verified before the call-back bridge rings them (issue 12, item 1), SQLite and PostgreSQL.

The code goes by SMS through the Twilio stand-in (which checks the credentials and the form); the calls the
bridge places go to the same stand-in, so "never rung" is read off the calls it received. Every change of
a phone leaves an audit row; each attempt keeps the number it rang, encrypted, and who asked; the bridge
stops at its hourly limits, counting the attempts that never reached the operator.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from flask import Flask
from sqlalchemy import select, text, update

from app import get_database
from cases import phones
from cases.models import AttemptOutcome, CallbackAttempt
from cases.staff import AuditEvent, PhoneVerification, User
from console.base import console_clock
from infra.config import Config, ConfigError
from infra.crypto import FieldCipher
from infra.db import make_engine
from telephony.simulator.media_server import MediaServer
from telephony.simulator.outbound import OutboundPlan
from tests.conftest import database_url, make_config
from tests.integration import test_callback_bridge as bridge
from tests.integration.test_callback_bridge import (
    OPERATOR_PHONE,
    World,
    attempts,
    call_back,
    flashes,
    post,
    signed_in,
)
from tests.integration.test_migrations import _alembic

# The bridge tests' fixtures: the Twilio stand-in, the app served to it, the seeded case and staff.
twilio, live, world = bridge.twilio, bridge.live, bridge.world

FOREIGN_AND_PREMIUM = {
    "+8613912345678": phones.NOT_ALLOWED_COUNTRY,  # a Chinese mobile
    "+88213412345": phones.NOT_ALLOWED_COUNTRY,  # international networks (satellite)
    "+19002345678": phones.NOT_ALLOWED_COUNTRY,  # US premium rate
    "+661900123456": phones.NOT_ORDINARY,  # Thai premium rate (1900)
    "+661800123456": phones.NOT_ORDINARY,  # Thai toll free
    "+66601234567": phones.NOT_ORDINARY,  # Thai VoIP range
    "+66 12345": phones.NOT_ASSIGNED,  # no such Thai number
    "call me": phones.NOT_A_NUMBER,
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def config(tmp_path: Path, twilio: MediaServer) -> Config:
    return make_config(tmp_path, env={"TWILIO_API_BASE": twilio.base_url})


@pytest.fixture
def clock(app: Flask) -> Clock:
    moment = Clock()
    console_clock.install(app, moment)
    return moment


def user(app: Flask, username: str) -> User:
    with get_database(app).session() as session:
        found = session.scalar(select(User).where(User.username == username))
        assert found is not None
        return found


def audit(app: Flask, username: str) -> list[tuple[str, dict[str, object]]]:
    with get_database(app).session() as session:
        person = session.scalar(select(User).where(User.username == username))
        assert person is not None
        return [(e.action, dict(e.detail)) for e in phones.audit_trail(session, person)]


def sent_code(twilio: MediaServer, to: str) -> str:
    message = twilio.messages()[-1]
    assert message.to == to
    found = re.search(r"\b(\d{6})\b", message.body)
    assert found, message.body
    return found.group(1)


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


# ---- the console: number, code, saved ---------------------------------------------------------------


def test_a_phone_is_saved_only_when_the_code_sent_to_it_comes_back(
    app: Flask, world: World, twilio: MediaServer, clock: Clock
) -> None:
    op = signed_in(app, world, "op50b")
    page = op.get("/console/me").get_data(as_text=True)
    assert 'id="phone-number-form"' in page and "ส่งรหัส" in page
    # Without the form's CSRF token nothing is sent.
    assert op.post("/console/me/phone", data={"phone": "081 234 5678"}).status_code == 400
    assert twilio.messages() == []

    post(op, "/console/me/phone", phone="081 234 5678")
    assert [c for c, _m in flashes(op)] == ["ok"]
    code = sent_code(twilio, "+66812345678")
    assert twilio.messages()[-1].from_ == "+6621266565"
    with get_database(app).session() as session:
        [row] = session.scalars(select(PhoneVerification)).all()
        # The pending number is encrypted, the code only a keyed hash.
        assert "812345678" not in row.number_enc and code not in row.code_hash
        assert FieldCipher(app.config["HOTLINE"].data_key).decrypt(row.number_enc) == "+66812345678"
        assert row.expires_at == clock.now + timedelta(minutes=10)
    assert user(app, "op50b").phone is None  # nothing saved yet
    page = op.get("/console/me").get_data(as_text=True)
    assert 'id="phone-code-form"' in page and "+66 8x xxx x678" in page

    post(op, "/console/me/phone/code", code=other_code(code))
    [(category, message)] = flashes(op)
    assert category == "error" and "4" in message
    assert user(app, "op50b").phone is None
    post(op, "/console/me/phone/code", code=code)
    assert [c for c, _m in flashes(op)] == ["ok"]
    saved = user(app, "op50b")
    assert saved.phone == "+66812345678" and saved.phone_verified_at == clock.now
    assert 'id="phone-verified"' in op.get("/console/me").get_data(as_text=True)
    actions = [a for a, _d in audit(app, "op50b")]
    assert actions == ["phone_code_requested", "phone_code_wrong", "phone_verified"]
    assert all("812345678" not in str(d) for _a, d in audit(app, "op50b"))

    post(op, "/console/me/phone/remove")
    assert user(app, "op50b").phone is None and user(app, "op50b").phone_verified_at is None
    assert audit(app, "op50b")[-1][0] == "phone_removed"


@pytest.mark.parametrize(("number", "why"), sorted(FOREIGN_AND_PREMIUM.items()))
def test_foreign_premium_and_unassigned_numbers_are_refused_and_audited(
    app: Flask, world: World, twilio: MediaServer, number: str, why: str
) -> None:
    op = signed_in(app, world, "op50b")
    post(op, "/console/me/phone", phone=number)
    [(category, _message)] = flashes(op)
    assert category == "error"
    assert twilio.messages() == []
    with get_database(app).session() as session:
        assert session.scalar(select(PhoneVerification.id)) is None
    [(action, detail)] = audit(app, "op50b")
    assert action == "phone_refused" and detail["why"] == why[:60]
    assert user(app, "op50b").phone is None


def test_the_allow_list_admits_another_country_but_never_its_premium_numbers() -> None:
    with pytest.raises(phones.PhoneError):
        phones.check_number("+12015550123", phones.PhonePolicy())
    policy = phones.PhonePolicy(countries=frozenset({66, 1}))
    assert phones.check_number("+1 201 555 0123", policy) == "+12015550123"
    for premium in ("+19002345678", "+661900123456"):
        with pytest.raises(phones.PhoneError) as refused:
            phones.check_number(premium, policy)
        assert refused.value.text.msgid == phones.NOT_ORDINARY
    assert phones.check_number("02 126 6565", policy) == "+6621266565"  # a Bangkok fixed line
    assert phones.check_number("081 234 5678", policy) == "+66812345678"


def test_the_allow_list_setting(tmp_path: Path) -> None:
    assert make_config(tmp_path).staff_phone_countries == frozenset({66})
    assert make_config(tmp_path, env={"HOTLINE_STAFF_PHONE_COUNTRIES": "66, +95"}).staff_phone_countries == {
        66,
        95,
    }
    with pytest.raises(ConfigError, match="HOTLINE_STAFF_PHONE_COUNTRIES"):
        make_config(tmp_path, env={"HOTLINE_STAFF_PHONE_COUNTRIES": "thailand"})


def test_an_expired_code_saves_nothing(app: Flask, world: World, twilio: MediaServer, clock: Clock) -> None:
    op = signed_in(app, world, "op50b")
    post(op, "/console/me/phone", phone="0812345678")
    code = sent_code(twilio, "+66812345678")
    clock.now += timedelta(minutes=10, seconds=1)
    assert 'id="phone-code-form"' not in op.get("/console/me").get_data(as_text=True)
    post(op, "/console/me/phone/code", code=code)
    assert [c for c, _m in flashes(op)] == ["error"]
    assert user(app, "op50b").phone is None
    assert [a for a, _d in audit(app, "op50b")][-1] == "phone_code_expired"
    with get_database(app).session() as session:
        assert session.scalars(select(PhoneVerification.status)).all() == ["expired"]


def test_five_wrong_codes_end_the_code_even_for_the_right_one_after(
    app: Flask, world: World, twilio: MediaServer, clock: Clock
) -> None:
    op = signed_in(app, world, "op50b")
    post(op, "/console/me/phone", phone="0812345678")
    code = sent_code(twilio, "+66812345678")
    for _ in range(5):
        post(op, "/console/me/phone/code", code=other_code(code))
    post(op, "/console/me/phone/code", code=code)
    assert user(app, "op50b").phone is None
    wrong = [d for a, d in audit(app, "op50b") if a == "phone_code_wrong"]
    assert [d["tries"] for d in wrong] == [1, 2, 3, 4, 5] and wrong[-1]["ended"] is True
    with get_database(app).session() as session:
        assert session.scalars(select(PhoneVerification.status)).all() == ["failed"]


def test_codes_are_limited_per_hour_and_a_new_code_replaces_the_old(
    app: Flask, world: World, twilio: MediaServer, clock: Clock
) -> None:
    op = signed_in(app, world, "op50b")
    for number in ("0812345678", "0812345679", "0812345670"):
        post(op, "/console/me/phone", phone=number)
    first, second, third = (m.body for m in twilio.messages())
    post(op, "/console/me/phone", phone="0812345671")
    assert len(twilio.messages()) == 3 and [c for c, _m in flashes(op)][-1] == "error"
    with get_database(app).session() as session:
        assert session.scalars(select(PhoneVerification.status).order_by(PhoneVerification.id)).all() == [
            "replaced",
            "replaced",
            "pending",
        ]
    # Only the last code counts.
    post(op, "/console/me/phone/code", code=re.findall(r"\d{6}", first)[0])
    assert user(app, "op50b").phone is None
    post(op, "/console/me/phone/code", code=re.findall(r"\d{6}", third)[0])
    assert user(app, "op50b").phone == "+66812345670"
    # An hour on, codes may be sent again.
    with get_database(app).session() as session:
        session.execute(update(PhoneVerification).values(created_at=clock.now - timedelta(minutes=61)))
    post(op, "/console/me/phone", phone="0812345671")
    assert len(twilio.messages()) == 4
    assert second != first != third


def test_an_sms_that_fails_leaves_no_code_to_key(app: Flask, world: World, twilio: MediaServer) -> None:
    op = signed_in(app, world, "op50b")
    twilio.inject_messages("http503", times=1)
    post(op, "/console/me/phone", phone="0812345678")
    assert [c for c, _m in flashes(op)] == ["error"]
    with get_database(app).session() as session:
        assert session.scalars(select(PhoneVerification.status)).all() == ["not_sent"]
    assert [a for a, _d in audit(app, "op50b")] == ["phone_code_requested", "phone_code_not_sent"]


# ---- the bridge rings only a verified phone ------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "verified"),
    [
        (OPERATOR_PHONE, False),  # set before verification existed (the migration leaves it unverified)
        ("+19002345678", True),  # verified once, yet a premium number (or the rules changed)
        ("+8613912345678", True),  # verified once, yet foreign
    ],
)
def test_an_unverified_or_foreign_premium_number_is_never_rung(
    app: Flask, world: World, twilio: MediaServer, live: str, phone: str, verified: bool
) -> None:
    with get_database(app).session() as session:
        op50 = session.get(User, world.op50)
        assert op50 is not None
        op50.phone, op50.phone_verified_at = phone, (datetime.now(UTC) if verified else None)
    op = signed_in(app, world, "op50")
    page = op.get(f"/console/cases/{world.case_id}").get_data(as_text=True)
    assert "call-back-button" not in page and 'id="verify-phone-hint"' in page
    assert 'id="phone-unverified"' in op.get("/console/me").get_data(as_text=True) or verified
    r = post(op, f"/console/cases/{world.case_id}/callback/call")
    assert r.status_code == 302
    [(category, message)] = flashes(op)
    assert category == "error" and "ยืนยัน" in message
    assert twilio.calls.calls == [] and attempts(app, world) == []
    assert [p for _m, p in twilio.requests("POST") if p.endswith("/Calls.json")] == []


def test_each_attempt_keeps_the_number_it_rang_and_who_asked(
    app: Flask, world: World, twilio: MediaServer, live: str
) -> None:
    op = signed_in(app, world, "op50")
    call = call_back(app, op, twilio, world, OutboundPlan(reporter="no-answer"))
    [attempt] = attempts(app, world)
    assert attempt.operator_id == world.op50
    assert attempt.operator_number_enc and OPERATOR_PHONE not in attempt.operator_number_enc
    assert FieldCipher(app.config["HOTLINE"].data_key).decrypt(attempt.operator_number_enc) == call.to
    assert call.to == OPERATOR_PHONE


def test_three_calls_a_case_an_hour_and_operator_unreachable_counts(
    app: Flask, world: World, twilio: MediaServer, live: str
) -> None:
    op = signed_in(app, world, "op50")
    for _ in range(3):
        call_back(app, op, twilio, world, OutboundPlan(operator="no-answer"))
    assert [a.outcome for a in attempts(app, world)] == [AttemptOutcome.OPERATOR_UNREACHABLE] * 3
    r = post(op, f"/console/cases/{world.case_id}/callback/call")
    assert r.status_code == 302
    [(category, message)] = flashes(op)
    assert category == "error" and "3" in message
    assert len(twilio.calls.calls) == 3 and len(attempts(app, world)) == 3
    # An hour on, the case may be called again.
    with get_database(app).session() as session:
        session.execute(update(CallbackAttempt).values(started_at=datetime.now(UTC) - timedelta(minutes=61)))
    call_back(app, op, twilio, world, OutboundPlan(operator="no-answer"))
    assert len(twilio.calls.calls) == 4


def test_the_limits_are_settings(tmp_path: Path) -> None:
    default = make_config(tmp_path)
    assert (default.bridge_calls_per_user_hour, default.bridge_calls_per_case_hour) == (5, 3)
    lower = make_config(tmp_path, env={"HOTLINE_BRIDGE_CALLS_PER_USER_HOUR": "2"})
    assert (lower.bridge_calls_per_user_hour, lower.bridge_calls_per_case_hour) == (2, 3)
    with pytest.raises(ConfigError, match="HOTLINE_BRIDGE_CALLS_PER_CASE_HOUR"):
        make_config(tmp_path, env={"HOTLINE_BRIDGE_CALLS_PER_CASE_HOUR": "0"})


def test_a_users_limit_counts_their_calls_on_every_case(
    app: Flask, world: World, twilio: MediaServer, live: str
) -> None:
    op = signed_in(app, world, "op50")
    for _ in range(2):
        call_back(app, op, twilio, world, OutboundPlan(operator="busy"))
    # Three more of op50's attempts in the last hour, on another case: five in all, the user's limit,
    # while this case has had two (under its three).
    with get_database(app).session() as session:
        first = session.scalars(select(CallbackAttempt)).first()
        assert first is not None
        for _ in range(3):
            session.add(
                CallbackAttempt(
                    callback_id=first.callback_id,
                    case_id=world.anonymous_id,
                    operator_id=world.op50,
                    outcome=AttemptOutcome.OPERATOR_UNREACHABLE,
                    started_at=datetime.now(UTC),
                    ended_at=datetime.now(UTC),
                    operator_number_enc=first.operator_number_enc,
                )
            )
    post(op, f"/console/cases/{world.case_id}/callback/call")
    [(category, message)] = flashes(op)
    assert category == "error" and "5" in message
    assert len(twilio.calls.calls) == 2 and len(attempts(app, world)) == 2
    # Calls logged by hand ring nothing and count nothing.
    with get_database(app).session() as session:
        session.execute(
            update(CallbackAttempt)
            .where(CallbackAttempt.case_id == world.anonymous_id)
            .values(operator_number_enc=None)
        )
    call_back(app, op, twilio, world, OutboundPlan(operator="busy"))
    assert len(twilio.calls.calls) == 3


# ---- the shell: an audited override with the same checks ----------------------------------------------


def test_the_shell_sets_a_phone_without_a_code_only_with_the_same_checks_and_audited(
    app: Flask, world: World
) -> None:
    runner = app.test_cli_runner()
    done = runner.invoke(args=["users", "phone", "op50b", "0812345678"])
    assert done.exit_code == 0 and "audited" in done.output
    saved = user(app, "op50b")
    assert saved.phone == "+66812345678" and saved.phone_verified_at is not None
    for bad in ("+8613912345678", "+19002345678", "+661900123456", "not-a-number"):
        refused = runner.invoke(args=["users", "phone", "op50b", bad])
        assert refused.exit_code != 0
    assert user(app, "op50b").phone == "+66812345678"
    assert runner.invoke(args=["users", "phone", "op50b", ""]).exit_code == 0
    assert user(app, "op50b").phone is None
    actions = [a for a, _d in audit(app, "op50b")]
    assert actions == ["phone_set_by_admin"] + ["phone_refused"] * 4 + ["phone_removed"]
    with get_database(app).session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == "phone_set_by_admin")).all()
        assert [(r.user_id, r.detail["without_code"]) for r in rows] == [(None, True)]

    made = runner.invoke(
        args=["users", "create", "newop", "--name", "คนใหม่", "--phone", "+661900123456", "--password-stdin"],
        input="a-long-password-1\n",
    )
    assert made.exit_code != 0
    with get_database(app).session() as session:
        assert session.scalar(select(User.id).where(User.username == "newop")) is None
    made = runner.invoke(
        args=[
            "users",
            "create",
            "newop",
            "--name",
            "คนใหม่",
            "--phone",
            "+66 81 999 8888",
            "--password-stdin",
        ],
        input="a-long-password-1\n",
    )
    assert made.exit_code == 0, made.output
    assert user(app, "newop").phone == "+66819998888"


# ---- phones set before verification existed ------------------------------------------------------------


def test_the_migration_keeps_existing_phones_but_unverified(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    cfg = _alembic(url)
    command.upgrade(cfg, "0007")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (username, display_name, phone, password_hash, active, locale,"
                    " failed_logins, session_token, created_at) VALUES ('old', 'Old', '+66891112222', 'x',"
                    " true, 'th', 0, 't', CURRENT_TIMESTAMP)"
                )
            )
        command.upgrade(cfg, "0009")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT phone, phone_verified_at FROM users")).one()
    finally:
        engine.dispose()
    assert tuple(row) == ("+66891112222", None)
