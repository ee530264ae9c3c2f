"""A simulated Thai call, end to end with the shipped Whisper model: the caller's real Thai message comes
out as Thai text in the export and, as PyThaiNLP's words under a machine-draft label, on the case page.

The demo's path (telephony.simulator.commands): the app served in a thread, the simulated caller keying
the demo's choices and speaking the demo's message (a CC0 Common Voice clip as a phone line records it),
a `flask --app app worker` process that downloads it from the simulator's media server and transcribes it
with Whisper. One call, one Whisper run, for the whole module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app import create_app, get_database, upgrade_database
from cases import accounts
from cases.models import CENTRAL_OFFICE_CODE, Case, Office
from cases.offices import load_offices
from cases.staff import Role, RoleAssignment
from cases.transcript_words import words
from telephony.simulator.commands import DEMO_KEYS, DEMO_MESSAGE, simulate_call
from telephony.simulator.media_server import MediaServer
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, make_config
from tests.integration.test_console_transcripts import paragraph, shown_words, signed_in
from tests.integration.test_worker import WorkerProcess, worker_env
from transcription.models import Transcript, TranscriptStatus
from transcription.whisper_models import WHISPER_BASE_DIR, shipped_whisper_base

pytestmark = pytest.mark.slow
THAI = re.compile(r"[\u0e01-\u0e5b]")
PASSWORD = "a long enough password"


@dataclass
class ThaiCall:
    app: Flask
    case_id: int
    exported: dict[str, Any]
    transcript: Transcript


def _shipped_model_in(data_dir: Path, joined: Path) -> None:
    """The shipped model as the worker would join it, linked from the run's joined copy (not 145 MB again):
    the worker still finds it in its own data dir and verifies its checksum before loading it."""
    info = shipped_whisper_base(joined, "th")
    assert info is not None, "the Whisper base wheels are a default dependency"
    shutil.copytree(info.path, data_dir / WHISPER_BASE_DIR, copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def _agent(app: Flask) -> None:
    with get_database(app).session() as session:
        user = accounts.create_user(session, "agent", "สมหญิง รับสาย", PASSWORD)
        central = session.scalars(select(Office.id).where(Office.code == CENTRAL_OFFICE_CODE)).one()
        session.add(RoleAssignment(user_id=user.id, office_id=central, role=Role.AGENT))
        session.commit()


@pytest.fixture(scope="module")
def thai_call(tmp_path_factory: pytest.TempPathFactory, whisper_data_dir: Path) -> Iterator[ThaiCall]:
    tmp = tmp_path_factory.mktemp("thai-call")
    config = make_config(tmp)
    _shipped_model_in(config.data_dir, whisper_data_dir)
    upgrade_database(config.database_url)
    app = create_app(config)
    app.testing = True
    with get_database(app).session() as session:
        load_offices(session)
    _agent(app)
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        # Thai through Whisper, as shipped (the other worker tests choose Vosk to spare loading it).
        env = worker_env(config, media, HOTLINE_ENGINE_TH="whisper", HOTLINE_WHISPER_THREADS="2")
        worker = WorkerProcess.start(env, tmp / "worker.log")
        try:
            code = simulate_call(
                app,
                connect_base=None,
                keys=DEMO_KEYS,
                from_number="+66812345678",
                wav=DEMO_MESSAGE,
                quiet=True,
                media=media,
                wait_for_transcript_s=300,
            )
        finally:
            assert worker.stop() == 0, worker.text()
    assert code == 0, worker.text()
    result = app.test_cli_runner().invoke(args=["cases", "export", "--format", "json"])
    assert result.exit_code == 0, result.output
    (exported,) = json.loads(result.stdout)
    with get_database(app).session() as session:
        case_id = session.scalars(select(Case.id)).one()
        transcript = session.scalars(select(Transcript)).one()
        session.expunge(transcript)
    yield ThaiCall(app, case_id, exported, transcript)
    get_database(app).dispose()


def test_the_thai_message_is_thai_text_in_the_export(thai_call: ThaiCall) -> None:
    case = thai_call.exported
    assert case["language"] == "th" and case["status"] == "draft"
    assert case["transcript_status"] == TranscriptStatus.DONE, case
    text = case["transcript_text"]
    assert len(THAI.findall(text)) >= 20 and "เวลา" in text  # "…ย้อนเวลา…" is clearly spoken
    transcript = thai_call.transcript
    assert transcript.text == text  # the engine's text, stored and exported as it came
    assert (transcript.engine or "").startswith("faster-whisper")
    assert transcript.model_id == "whisper-base-1.0.0"


def test_the_case_page_shows_thai_words_under_a_machine_draft_label(thai_call: ThaiCall) -> None:
    agent = signed_in(thai_call.app, "agent", PASSWORD)
    page = agent.get(f"/console/cases/{thai_call.case_id}").get_data(as_text=True)
    transcript = thai_call.transcript
    note = paragraph(page, "draft-note")
    assert "ฉบับร่างจากเครื่อง" in note and "ตรวจกับเสียงบันทึก" in note
    assert f'<span translate="no">{transcript.engine} · whisper-base-1.0.0</span>' in note
    shown = shown_words(paragraph(page, "words"))
    # PyThaiNLP's words of the stored text, not Whisper's pieces (fewer, longer; "เว" "ล" "า" is เวลา).
    assert shown == words(transcript.text or "", "th") and "เวลา" in shown
    pieces = [str(w["word"]) for w in transcript.words or []]
    assert len(shown) < len(pieces) and "เวลา" not in pieces
    assert all(THAI.search(w) for w in shown)
