"""Words, not codes: the main Thai pages with every step of the phone menu, the IVR path as sentences, the
digits setting both ways, and a recording the worker gave up on.

Builds on test_console_thai's seeded world (cases in every state) and its check for English words; adds
the events the seed does not write (every kind of menu step at every node) and a check for raw codes.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from app import get_database
from cases.models import AttemptOutcome, Callback, CallbackAttempt, CallEvent, Case
from cases.reference import display_reference
from cases.staff import User
from console.i18n import CALL_EVENT_WORDS, IVR_NODE_WORDS
from infra.clock import utcnow
from tests.integration.test_console_thai import (  # noqa: F401 (world is a fixture)
    World,
    english_words,
    signed_in,
    visible_text,
    world,
)
from transcription.models import Recording, StorageStatus

# A code as the engine or the database writes it: `no_model`, `ask_province`, `duration_s`.
# The telephone provider is named as it is, as SMS and LINE are (test_console_thai's ALLOWED).
PROVIDER = "Twilio"
SEEDED_SUMMARY = "นักเรียนชั้น ม.2 ถูกรุ่นพี่รังแกทุกวันหลังเลิกเรียน ผู้แจ้งขอให้ติดต่อกลับ"
MASKED = re.compile(r"\+\d[\dx ]*\d")
SNAKE = re.compile(r"\b[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+\b")
THAI_DIGIT = re.compile(r"[๐-๙]")
ARABIC_TO_THAI = str.maketrans("0123456789", "๐๑๒๓๔๕๖๗๘๙")
# Details as the engine writes them (telephony.engine, telephony.service, telephony.endings).
DETAILS: list[dict[str, str]] = [
    {"via": "speech", "value": "50"},
    {"via": "keys", "value": "10"},
    {"via": "keys"},
    {"status": "no status callback"},
    {"status": "completed (asked Twilio)"},
    {"status": "no-answer"},
    {"reference": "12345678", "standing": "being_worked"},
    {"reason": "closed"},
    {"try": "2"},
    {"language": "en"},
    {"kind": "record"},
    {"sid": "RE0", "duration_s": "12"},
    {"to": "record_message"},
]
# A caller who says the province and leaves a longer message, as the engine writes it.
REAL_STEPS: list[tuple[str, str, dict[str, str]]] = [
    ("ask_province", "entered", {"via": "speech", "value": "50"}),
    ("record_message", "recorded", {"sid": "RE1", "duration_s": "12"}),
    ("welcome", "language", {"language": "en"}),
]
SYSTEM_NOTES = (
    "no word from Twilio about this call",
    "not started: Twilio error 21210: the From number is not verified",  # the provider's words, quoted
    "operator leg busy",
    "the case has no number to call",
)


def _case(session: object, seeded: World, key: str) -> Case:
    case = session.get(Case, seeded.cases[key])  # type: ignore[attr-defined]
    assert case is not None
    return case


@pytest.fixture
def full(app: Flask, world: World) -> World:  # noqa: F811 (the fixture imported above)
    """Every kind of menu step at every node on routed_50's call, the service's own call-back notes, one
    recording given up on with Twilio's copy kept and one with it gone."""
    now = utcnow()
    with get_database(app).session() as session:
        case = _case(session, world, "routed_50")
        nodes, kinds = list(IVR_NODE_WORDS), list(CALL_EVENT_WORDS)
        for i in range(max(len(nodes), len(kinds), len(DETAILS))):
            session.add(
                CallEvent(
                    call_id=case.call_id,
                    at=now,
                    node=nodes[i % len(nodes)],
                    kind=kinds[i % len(kinds)],
                    detail=DETAILS[i % len(DETAILS)],
                )
            )
        for node, kind, detail in REAL_STEPS:
            session.add(CallEvent(call_id=case.call_id, at=now, node=node, kind=kind, detail=detail))
        callback = session.scalars(select(Callback).where(Callback.case_id == case.id)).first()
        operator = session.scalars(select(User).where(User.username == "op50")).one()
        assert callback is not None
        for note in SYSTEM_NOTES:
            session.add(
                CallbackAttempt(
                    callback_id=callback.id,
                    case_id=case.id,
                    operator_id=operator.id,
                    outcome=AttemptOutcome.OPERATOR_UNREACHABLE,
                    started_at=now - timedelta(minutes=5),
                    ended_at=now,
                    note=note,
                )
            )
        for key, gone in (("routed_50", False), ("in_action_50", True)):
            rec = session.scalars(select(Recording).where(Recording.case_id == world.cases[key])).one()
            rec.storage_status, rec.stored_path, rec.download_attempts = StorageStatus.UNAVAILABLE, None, 5
            rec.status, rec.deleted_at_twilio = "completed", now if gone else None
        session.commit()
    return world


def pages(seeded: World) -> list[str]:
    found = ["/console/", "/console/notifications", "/console/dashboard", "/console/privacy"]
    found += ["/console/search/?q=1234", "/console/offices", "/console/approvals", "/console/assignments"]
    found += [f"/console/?state={s}" for s in ("draft", "routed", "proposed", "assigned", "in_action", "all")]
    return found + [f"/console/cases/{case_id}" for case_id in seeded.cases.values()]


@pytest.mark.parametrize("username", ["agent", "op50", "head50", "admin50"])
def test_the_main_thai_pages_show_no_code_and_no_english(app: Flask, full: World, username: str) -> None:
    client = signed_in(app, full, username)
    found, shown = [], 0
    for page in pages(full):
        response = client.get(page)
        assert response.status_code in {200, 403, 404}, page
        shown += response.status_code == 200
        text = visible_text(response.get_data(as_text=True)).replace(PROVIDER, " ")
        found += [f"{page}: {w}" for w in SNAKE.findall(text) + english_words(text)]
    assert shown >= 8
    assert found == [], "codes or English on Thai pages:\n" + "\n".join(sorted(set(found)))


def test_the_check_for_codes_finds_them() -> None:
    text = visible_text("<p>ไม่มี no_model ที่ ask_province (duration_s)</p><td translate='no'>a_b</td>")
    assert SNAKE.findall(text) == ["no_model", "ask_province", "duration_s"]


def _path(app: Flask, seeded: World) -> list[str]:
    html = signed_in(app, seeded, "op50").get(f"/console/cases/{seeded.cases['routed_50']}").get_data(True)
    section = html.split('id="h-ivr"', 1)[1].split("</section>", 1)[0]
    return [" ".join(visible_text(li).split()) for li in section.split("<li>")[1:]]


def test_the_ivr_path_reads_as_sentences(app: Flask, full: World) -> None:
    steps = _path(app, full)
    # The seed's call: key 1 on the main menu chose violence; the province keyed as 50.
    assert any(s.endswith("กด 1: ความรุนแรง") for s in steps), steps
    assert any(s.endswith("กดรหัสจังหวัด: เชียงใหม่") for s in steps), steps
    assert any(s.endswith("พูดชื่อจังหวัด: เชียงใหม่") for s in steps), steps
    assert any("ไม่ได้รับแจ้งจาก Twilio เกี่ยวกับสายนี้" in s for s in steps), steps
    assert any("ฝากข้อความยาว 12 วินาที" in s for s in steps), steps
    assert any(s.endswith("ภาษา: ภาษาอังกฤษ") for s in steps), steps
    assert not any(re.search(r"\b(en|th)\b", s) for s in steps), steps


def test_thai_digits_when_chosen_arabic_by_default(app: Flask, full: World) -> None:
    case_id = full.cases["routed_50"]
    with get_database(app).session() as session:
        reference = display_reference(_case(session, full, "routed_50").reference)
    client = signed_in(app, full, "op50")
    arabic = client.get(f"/console/cases/{case_id}").get_data(True)
    assert reference in arabic and not THAI_DIGIT.search(visible_text(arabic))
    app.config["HOTLINE"] = replace(app.config["HOTLINE"], console_digits="thai")
    thai = client.get(f"/console/cases/{case_id}").get_data(True)
    heading = visible_text(thai.split("<h1", 1)[1].split("</h1>", 1)[0])
    assert reference.translate(ARABIC_TO_THAI) in heading and reference not in heading
    steps = _path(app, full)
    assert any(s.endswith("กด ๑: ความรุนแรง") for s in steps), steps
    # Dates read the Buddhist Era year in Thai digits too, the queue's as the case page's.
    year = str(utcnow().year + 543)
    queue = visible_text(client.get("/console/?state=all").get_data(True))
    assert year.translate(ARABIC_TO_THAI) in queue and year not in queue
    # The English console keeps Arabic digits whatever the setting.
    with client.session_transaction() as browser:
        browser["locale"] = "en"
    english = visible_text(client.get(f"/console/cases/{case_id}").get_data(True))
    assert reference in english and not THAI_DIGIT.search(english)


def test_thai_digits_on_every_main_page(app: Flask, full: World) -> None:
    """With Thai digits chosen, no Arabic digit is left on the main pages but in what people typed (the
    seeded summary) and the masked number (+66 8x xxx x678), which is dialled as written."""
    app.config["HOTLINE"] = replace(app.config["HOTLINE"], console_digits="thai")
    client = signed_in(app, full, "head50")
    found = []
    for page in pages(full):
        text = MASKED.sub(" ", visible_text(client.get(page).get_data(True)).replace(SEEDED_SUMMARY, " "))
        found += [f"{page}: {m.group(0)!r}" for m in re.finditer(r".{0,20}[0-9]+", text)]
    assert found == [], "Arabic digits left:\n" + "\n".join(sorted(set(found)))


def test_a_recording_given_up_says_so_and_where_twilio_keeps_it(app: Flask, full: World) -> None:
    client = signed_in(app, full, "op50")
    kept = visible_text(client.get(f"/console/cases/{full.cases['routed_50']}").get_data(True))
    assert "ระบบเลิกพยายามดาวน์โหลดเสียงบันทึกนี้แล้ว หลังจากลอง 5 ครั้ง" in kept
    assert "Twilio ยังเก็บสำเนาไว้" in kept and "ยังไม่พร้อม" not in kept
    gone = visible_text(client.get(f"/console/cases/{full.cases['in_action_50']}").get_data(True))
    assert "ระบบเลิกพยายามดาวน์โหลด" in gone and "Twilio ไม่มีสำเนาเก็บไว้เช่นกัน" in gone
    assert "Twilio ยังเก็บสำเนาไว้" not in gone
    html = client.get(f"/console/cases/{full.cases['routed_50']}").get_data(True)
    assert app.config["HOTLINE"].twilio_auth_token not in html


def test_the_services_call_back_notes_read_in_thai(app: Flask, full: World) -> None:
    html = signed_in(app, full, "op50").get(f"/console/cases/{full.cases['routed_50']}").get_data(True)
    text = visible_text(html)
    for said in ("ไม่ได้รับแจ้งจาก Twilio เกี่ยวกับสายนี้", "โทรศัพท์ของเจ้าหน้าที่: สายไม่ว่าง"):
        assert said in text
    assert "จำนวนครั้งที่โทรกลับไปแล้ว" in text
    # The provider's reason is quoted as it came, marked translate="no" inside the Thai words.
    assert 'ไม่ได้เริ่มโทร: <span translate="no">Twilio error 21210: the From number' in html
