"""Search from the console: by reference, by a number's last digits (hashed, POST only, audited) and by
Thai words of summaries and transcripts; limited to what the user may see; erased data leaves the index."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select

from app import get_database
from cases import search, search_index, workflow
from cases.keys import RotationReport, rotate_numbers
from cases.models import Case, SearchText
from cases.reference import display_reference
from cases.retention.sweep import erase_case_number, erase_recording_content
from cases.staff import User
from infra.clock import utcnow
from infra.config import Config
from infra.crypto import FieldCipher
from tests.integration.test_console import World, as_user, audits, fetch, post, seeded_world, text
from transcription.models import Recording, Transcript

NO_MATCH = "ไม่มีเรื่องที่ท่านดูได้ตรงกับที่ค้นหา"


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    return seeded_world(app, config)


def _case(app: Flask, case_id: int) -> Case:
    with get_database(app).session() as session:
        return session.get_one(Case, case_id)


def _number(app: Flask, config: Config, case_id: int) -> str:
    token = _case(app, case_id).callback_number_enc
    assert token
    return FieldCipher(config.data_key).decrypt(token)


def _words_page(client: object, query: str) -> str:
    return text(fetch(client, f"/console/search/?q={query}"))  # type: ignore[arg-type]


def test_a_reference_is_found_with_or_without_the_dash(app: Flask, world: World) -> None:
    reference = _case(app, world.cases["routed_50"]).reference
    operator = as_user(app, world, "op50")
    for typed in (reference, display_reference(reference), f" {reference[:4]} {reference[4:]} "):
        page = _words_page(operator, typed)
        assert display_reference(reference) in page and "ตรงเงื่อนไข 1 เรื่อง" in page
    # Another office's SC-Operator is told nothing of it.
    assert display_reference(reference) not in _words_page(as_user(app, world, "op10"), reference)


def test_the_last_digits_find_the_case_by_post_and_the_lookup_is_audited(
    app: Flask, config: Config, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    case_id = world.cases["routed_50"]
    reference = display_reference(_case(app, case_id).reference)
    number = _number(app, config, case_id)
    operator = as_user(app, world, "op50")
    for digits in (number[-4:], number[-7:], number):
        found = post(operator, "/console/search/number", digits=digits)
        assert found.status_code == 200 and reference in text(found)
    # The same last four after other digits: not this number.
    wrong = ("0" if number[-5] != "0" else "1") + number[-4:]
    assert reference not in text(post(operator, "/console/search/number", digits=wrong))
    assert NO_MATCH in text(post(operator, "/console/search/number", digits="0000000"))
    # Too few digits: nothing looked up.
    assert "อย่างน้อย 4 หลักท้าย" in text(post(operator, "/console/search/number", digits="678"))
    rows = audits(app, "search_by_number")
    assert len(rows) == 5 and rows[0].user_id == world.users["op50"]
    assert rows[0].detail == {"digits": 4, "found": 1, "page": 1}
    shown = str([r.detail for r in rows]) + caplog.text
    assert number[-4:] not in shown
    # Without the CSRF token the form is refused.
    assert operator.post("/console/search/number", data={"digits": number[-4:]}).status_code == 400


def test_digits_never_travel_in_an_address(app: Flask, config: Config, world: World) -> None:
    number = _number(app, config, world.cases["routed_50"])
    operator = as_user(app, world, "op50")
    # Typed into the address form anyway: not looked up, and the page points to the number form.
    page = _words_page(operator, number[-6:])
    assert "แบบฟอร์มหมายเลขโทรศัพท์" in page and "ตรงเงื่อนไข" not in page
    # Nor inside words: a number among them is not searched for either.
    assert "แบบฟอร์มหมายเลขโทรศัพท์" in _words_page(operator, f"โทร {number[-9:-6]} {number[-6:]}")
    assert "ตรงเงื่อนไข" in _words_page(operator, "ม.2 ปี 2567")  # a class or a year is not a number
    assert audits(app, "search_by_number") == []
    # The queue's number form posts (CSRF), and its result pages post too.
    queue = text(fetch(operator, "/console/"))
    assert 'method="post" action="/console/search/number"' in queue
    found = post(operator, "/console/search/number", digits=number[-4:])
    assert found.status_code == 200 and "Location" not in found.headers
    assert operator.get(f"/console/search/number?digits={number[-4:]}").status_code == 405


def test_a_thai_word_is_found_inside_a_longer_sentence(app: Flask, world: World) -> None:
    operator = as_user(app, world, "op50")
    # seed_console's summary: "นักเรียนชั้น ม.2 ถูกรุ่นพี่รังแกทุกวันหลังเลิกเรียน ...", written without spaces.
    page = _words_page(operator, "รุ่นพี่")
    for key in ("proposed_50", "assigned_50", "in_action_50", "resolved_50"):
        assert display_reference(_case(app, world.cases[key]).reference) in page
    assert display_reference(_case(app, world.cases["routed_50"]).reference) not in page  # not summarised
    # Two words, both required; a part of a word is not a word.
    assert "ตรงเงื่อนไข 5 เรื่อง" in _words_page(operator, "รุ่นพี่ เลิกเรียน")
    assert NO_MATCH in _words_page(operator, "รุ่นพี่ ฟุตบอล")
    assert NO_MATCH in _words_page(operator, "พี่รัง")
    # Another office's SC-Operator finds none of Chiang Mai's cases.
    assert NO_MATCH in _words_page(as_user(app, world, "op10"), "รุ่นพี่")


def test_a_staff_correction_is_searchable_at_once(app: Flask, world: World) -> None:
    case_id, rec_id = world.cases["routed_50"], world.recordings["routed_50"]
    operator = as_user(app, world, "op50")
    post(
        operator,
        f"/console/cases/{case_id}/recordings/{rec_id}/correction",
        text="ครูพละตีเด็กที่สนามฟุตบอลหลังโรงเรียน",
    )
    assert display_reference(_case(app, case_id).reference) in _words_page(operator, "สนามฟุตบอล")
    # A newer correction replaces the words of the older one.
    post(operator, f"/console/cases/{case_id}/recordings/{rec_id}/correction", text="ครูพละตีเด็กที่โรงอาหาร")
    assert NO_MATCH in _words_page(operator, "สนามฟุตบอล")
    assert display_reference(_case(app, case_id).reference) in _words_page(operator, "โรงอาหาร")


def test_erased_transcripts_and_numbers_leave_the_index(app: Flask, config: Config, world: World) -> None:
    case_id, rec_id = world.cases["in_action_50"], world.recordings["in_action_50"]
    number = _number(app, config, case_id)
    cipher = FieldCipher(config.data_key)
    db = get_database(app)
    with db.session() as session:
        # A transcript as the worker finishes it (its hook indexes it).
        transcript = session.scalars(select(Transcript).where(Transcript.recording_id == rec_id)).one()
        transcript.text = "เด็กถูกทำร้ายที่ป้ายรถเมล์"
        search_index.on_transcript(session, transcript)
    with db.read_session() as session:
        head = session.get_one(User, world.users["op50"])
        assert [c.id for c in search.by_words(session, head, "ป้ายรถเมล์").cases] == [case_id]
        assert case_id in [c.id for c in search.by_digits(session, head, cipher, number[-4:]).cases]
    with db.session() as session:
        erase_recording_content(session, session.get_one(Recording, rec_id), utcnow())
        erase_case_number(session, session.get_one(Case, case_id), utcnow())
    with db.read_session() as session:
        head = session.get_one(User, world.users["op50"])
        assert search.by_words(session, head, "ป้ายรถเมล์").total == 0
        assert case_id not in [c.id for c in search.by_digits(session, head, cipher, number[-4:]).cases]
        assert session.scalars(select(SearchText.kind).where(SearchText.source_id == rec_id)).all() == []
        erased = session.get_one(Case, case_id)
        assert erased.callback_digits_hash is None and erased.caller_digits_hash is None


def test_hashes_follow_a_key_rotation(app: Flask, config: Config, world: World) -> None:
    case_id = world.cases["routed_50"]
    number = _number(app, config, case_id)
    new_key = Fernet.generate_key().decode()
    rotating = FieldCipher(f"{new_key},{config.data_key}")
    db = get_database(app)
    with db.read_session() as session:
        op = session.get_one(User, world.users["op50"])
        # Before `keys rotate`: the stored hashes are the old key's, still found.
        assert case_id in [c.id for c in search.by_digits(session, op, rotating, number[-4:]).cases]
        assert search.by_digits(session, op, FieldCipher(new_key), number[-4:]).total == 0
    said: list[str] = []
    rotate_numbers(db, rotating, RotationReport(), said.append)  # `keys rotate`
    assert "numbers: search hashes: 9 made under the first key" in said
    assert search_index.fill_digit_hashes(db, rotating, only_missing=False) == 0  # nothing left to do
    with db.read_session() as session:
        op = session.get_one(User, world.users["op50"])
        assert case_id in [
            c.id for c in search.by_digits(session, op, FieldCipher(new_key), number[-4:]).cases
        ]


def test_db_upgrade_makes_the_hashes_of_numbers_stored_before_them(
    app: Flask, config: Config, world: World
) -> None:
    db = get_database(app)
    with db.session() as session:
        for case in session.scalars(select(Case)):
            search_index.clear_number_hashes(case)
    cipher = FieldCipher(config.data_key)
    assert search_index.fill_digit_hashes(db, cipher, only_missing=True) >= 8
    number = _number(app, config, world.cases["routed_50"])
    with db.read_session() as session:
        op = session.get_one(User, world.users["op50"])
        assert search.by_digits(session, op, cipher, number).total == 1


def test_results_come_a_page_at_a_time(app: Flask, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    db = get_database(app)
    with db.read_session() as session:
        centre = session.get_one(User, world.users["agent"])
        first = search.by_words(session, centre, "รุ่นพี่", page=1, per_page=2)
        second = search.by_words(session, centre, "รุ่นพี่", page=2, per_page=2)
        last = search.by_words(session, centre, "รุ่นพี่", page=99, per_page=2)
    assert first.total == 5 and first.pages == 3 and len(first.cases) == 2
    assert {c.id for c in first.cases}.isdisjoint({c.id for c in second.cases})
    assert last.page == 3 and len(last.cases) == 1 and not last.more
    # Past MAX_RESULTS the count stops, and the page says there are more.
    monkeypatch.setattr(search, "MAX_RESULTS", 3)
    with db.read_session() as session:
        centre = session.get_one(User, world.users["agent"])
        capped = search.by_words(session, centre, "รุ่นพี่", page=9, per_page=2)
    assert (capped.total, capped.more, capped.pages, capped.page, len(capped.cases)) == (3, True, 2, 2, 1)
    page = text(fetch(as_user(app, world, "agent"), "/console/search/?q=รุ่นพี่"))
    assert "มากกว่า 3 เรื่อง" in page


def test_summaries_stay_in_step(app: Flask, world: World) -> None:
    db = get_database(app)
    with db.session() as session:
        case = session.get_one(Case, world.cases["routed_10"])
        workflow.summarise(
            session, case, session.get_one(User, world.users["op10"]), "ไฟไหม้ห้องวิทยาศาสตร์", case.category
        )
    with db.read_session() as session:
        op10 = session.get_one(User, world.users["op10"])
        assert [c.id for c in search.by_words(session, op10, "วิทยาศาสตร์").cases] == [world.cases["routed_10"]]
        assert search.by_words(session, op10, "รุ่นพี่").total == 0
