"""The case page's transcripts: Thai shown as words, low-confidence words marked, a Whisper transcript
labelled a machine draft, and the agent's correction compared with the machine's words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import get_database
from infra.config import Config
from infra.crypto import FieldCipher
from tests.support.seed import seed_console
from tests.unit.test_transcript_words import WHISPER_PIECES, WHISPER_TEXT, pieces
from transcription.models import Transcript

WHISPER_ENGINE = "faster-whisper 1.2.1"
CORRECTED = "มันเป็นเรื่องที่ดี ที่การเดินทางย้อนเวลาไม่ได้มีอยู่จริง"


@dataclass
class Case:
    id: int
    recording: int
    password: str


def _whisper_case(app: Flask, config: Config) -> Case:
    """The seeded draft case at the centre, its message transcribed by Whisper as the worker would."""
    with get_database(app).session() as session:
        s = seed_console(
            session,
            cipher=FieldCipher(config.data_key),
            recordings_dir=config.recordings_dir,
            recording_key=config.recording_key,
        )
        rec = s.recordings["draft_central"]
        transcript = session.scalars(select(Transcript).where(Transcript.recording_id == rec.id)).one()
        transcript.text, transcript.words = WHISPER_TEXT, pieces(WHISPER_PIECES)
        transcript.engine, transcript.model_id = WHISPER_ENGINE, "whisper-base-1.0.0"
        session.commit()
        return Case(s.cases["draft_central"].id, rec.id, s.password)


@pytest.fixture
def case(app: Flask, config: Config) -> Case:
    return _whisper_case(app, config)


def machine_transcript(session: Session, case: Case) -> Transcript:
    return session.scalars(select(Transcript).where(Transcript.recording_id == case.recording)).one()


def signed_in(app: Flask, username: str, password: str) -> FlaskClient:
    client = app.test_client()
    form = {"username": username, "password": password, "csrf_token": csrf(client, "/console/login")}
    assert client.post("/console/login", data=form).status_code == 302
    return client


def csrf(client: FlaskClient, path: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def paragraph(page: str, css_class: str) -> str:
    """The inner HTML of the first <p class="…"> with that class."""
    match = re.search(rf'<p class="{css_class}"[^>]*>(.*?)</p>', page, re.S)
    assert match, f'no <p class="{css_class}">'
    return match.group(1)


def shown_words(html: str) -> list[str]:
    """The words of a paragraph as a reader sees them (tags and the screen-reader notes taken out)."""
    html = re.sub(r'<span class="visually-hidden">.*?</span>', "", html)
    return unescape(re.sub(r"<[^>]+>", "", html)).split()


def test_a_whisper_transcript_reads_as_thai_words_marked_and_labelled_a_draft(app: Flask, case: Case) -> None:
    page = signed_in(app, "agent", case.password).get(f"/console/cases/{case.id}").get_data(as_text=True)
    machine = paragraph(page, "words")
    # PyThaiNLP's words, not Whisper's pieces ("มั น เป็ น"): the text reads as Thai with word breaks.
    assert shown_words(machine)[:4] == ["มัน", "เป็นเรื่อง", "ที่", "ดี"]
    assert "".join(shown_words(machine)) == WHISPER_TEXT.replace(" ", "")
    low = re.findall(r'<mark class="low"[^>]*>([^<]+)<', machine)
    assert low == ["กัง", "เดินทาง", "ยอน", "ได้"]
    assert 'title="ความมั่นใจต่ำ: 45%"' in machine  # เดินทาง: its most doubtful piece, เดิ
    note = paragraph(page, "draft-note")
    assert "ฉบับร่างจากเครื่อง" in note and "อาจมีคำผิด" in note and "ตรวจกับเสียงบันทึก" in note
    assert f'<span translate="no">{WHISPER_ENGINE} · whisper-base-1.0.0</span>' in note


def test_a_vosk_transcript_is_not_labelled_a_draft(app: Flask, case: Case) -> None:
    with get_database(app).session() as session:
        transcript = machine_transcript(session, case)
        transcript.engine = "vosk 0.3.45"
        session.commit()
    page = signed_in(app, "agent", case.password).get(f"/console/cases/{case.id}").get_data(as_text=True)
    assert 'class="words"' in page and "draft-note" not in page and "ฉบับร่างจากเครื่อง" not in page


def test_the_correction_is_shown_against_the_machine_words(app: Flask, case: Case) -> None:
    agent = signed_in(app, "agent", case.password)
    path = f"/console/cases/{case.id}"
    saved = agent.post(
        f"{path}/recordings/{case.recording}/correction",
        data={"text": CORRECTED, "csrf_token": csrf(agent, path)},
    )
    assert saved.status_code == 302
    page = agent.get(path).get_data(as_text=True)
    diff = paragraph(page, "words diff")
    assert re.findall(r"<del>([^<]+)<", diff) == ["กัง", "ยอน"]
    assert re.findall(r"<ins>([^<]+)<", diff) == ["การ", "ย้อน"]
    assert "เทียบกับข้อความที่ถอดโดยเครื่อง" in page
    # The machine's text is kept as the engine gave it, beside the correction.
    with get_database(app).session() as session:
        assert machine_transcript(session, case).text == WHISPER_TEXT

    # The same words with other spacing: nothing to show as changed.
    agent.post(
        f"{path}/recordings/{case.recording}/correction",
        data={"text": WHISPER_TEXT.replace(" ", ""), "csrf_token": csrf(agent, path)},
    )
    page = agent.get(path).get_data(as_text=True)
    assert 'class="words diff"' not in page and "ถ้อยคำตรงกับข้อความที่ถอดโดยเครื่องทุกคำ" in page
