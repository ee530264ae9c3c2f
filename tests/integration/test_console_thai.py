"""Thai everywhere: every console page (as each role that sees it) and every refusal, with no English left.

The check strips tags, scripts and styles from a page and flags any run of three or more ASCII letters
that is not on the short allow-list below: the catalogue can be complete and a page still show English
(a message never marked, a raw code such as `no_model` or `duration_s`, an English parameter).
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import get_database
from cases import accounts, callbacks, phones, workflow
from cases.models import (
    CaseStatus,
    Channel,
    ForwardingProposal,
    Notification,
    NotificationAttempt,
    NotificationStatus,
    TranscriptCorrection,
)
from cases.notifications import KINDS, notify
from cases.staff import User
from cases.texts import Text
from cases.words import MOVE_WORDS, ROLE_WORDS, STATE_WORDS
from cases.workflow import TRANSITIONS, IllegalMove, Move, NotPermitted, WorkflowError
from console.i18n import error_text, translate
from infra.clock import utcnow
from infra.config import Config
from infra.crypto import FieldCipher
from tests.support.seed import Seeded, seed_console
from transcription.models import Transcript, TranscriptStatus

ROOT = Path(__file__).resolve().parents[2]
# Names that stay as they are in Thai: the role codes of the agreed Thai usage (DESIGN.md), the call
# centre's English gloss, product names; and what the seed itself writes (usernames, references).
# "English" is the language toggle, named in its own language.
ALLOWED = {"SC-Operator", "SC-Action", "Call Center", "SMS", "LINE", "MOE", "English"}
USERNAMES = {"agent", "op50", "op50b", "head50", "action50", "admin50", "op10", "op5001"}
TOKEN = re.compile(r"[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*")
LETTERS = re.compile(r"[A-Za-z]{3}")
# A command-line option in a shell message (`--name`) is a code, not a word; a masked phone number
# (`+66 8x xxx x678`) is digits and x's.
OPTION = re.compile(r"--[a-z][a-z-]*")
MASKED = re.compile(r"\+\d[\dx ]*\d")


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Text(HTMLParser):
    """The text a reader sees: no tags, no script or style bodies, no attribute values."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # translate="no" (HTML's own marker) holds what is quoted as it came: a provider's or the
        # operating system's error, for the server's administrator. It must be on an element that is closed.
        if self._hidden or tag in {"script", "style", "template"} or ("translate", "no") in attrs:
            self._hidden += tag not in VOID

    def handle_endtag(self, tag: str) -> None:
        if self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    return " ".join(parser.parts)


def english_words(text: str) -> list[str]:
    """Runs of 3+ ASCII letters a Thai reader should not meet (allow-listed names taken out first)."""
    for name in sorted(ALLOWED, key=len, reverse=True):
        text = text.replace(name, " ")
    text = MASKED.sub(" ", OPTION.sub(" ", text))
    return [w for w in TOKEN.findall(text) if LETTERS.search(w) and w not in USERNAMES]


@dataclass
class World:
    password: str
    cases: dict[str, int]
    offices: dict[str, int]


def _more_to_show(session: Session, app: Flask, s: Seeded) -> None:
    """What the seed leaves empty: call backs, a notification of every kind, a failed delivery, worker faults
    and a transcript the worker could not make; so that those parts of the pages are read too."""
    now = utcnow()
    for case in s.cases.values():
        callbacks.open_callback(session, case, callbacks.callback_settings(app), now)
    staff = list(s.users.values())
    for kind in KINDS:
        params = {"reference": s.cases["routed_50"].reference, "due_at": now.isoformat(), "attempts": "1"}
        link = f"/console/cases/{s.cases['routed_50'].id}"
        notify(
            session,
            dedupe=f"thai-{kind}",
            kind=kind,
            case=s.cases["routed_50"],
            users=staff,
            office=s.offices["50"],
            channels=[Channel.CONSOLE],
            params=params | {"max_attempts": "3"},
            link=link,
            now=now,
        )
    failed = Notification(
        dedupe_key="thai-failed",
        kind="at_due",
        channel=Channel.EMAIL,
        case_id=s.cases["routed_50"].id,
        user_id=s.users["head50"].id,
        subject="-",
        body="-",
        status=NotificationStatus.FAILED,
        attempts=3,
        last_error="SMTP 550 from relay (recipient refused)",
        created_at=now,
    )
    session.add(failed)
    session.flush()
    session.add(NotificationAttempt(notification_id=failed.id, at=now, ok=False, error=failed.last_error))
    s.recordings["in_action_50"].last_error = "HTTP 500 from the media server"
    s.recordings["in_action_50"].next_attempt_at = now + timedelta(minutes=5)
    transcript = session.scalars(
        select(Transcript).where(Transcript.recording_id == s.recordings["district_5001"].id)
    ).one()
    transcript.status, transcript.reason, transcript.text = TranscriptStatus.NO_MODEL, "no_model", None
    transcript.words = None
    failed_transcript = session.scalars(
        select(Transcript).where(Transcript.recording_id == s.recordings["routed_50"].id)
    ).one()
    failed_transcript.status, failed_transcript.reason = TranscriptStatus.FAILED, "recognizer_error"
    failed_transcript.words = None
    # A Whisper transcript (labelled a machine draft) with a correction (compared word by word).
    whisper = session.scalars(
        select(Transcript).where(Transcript.recording_id == s.recordings["draft_central"].id)
    ).one()
    whisper.engine, whisper.model_id = "faster-whisper 1.2.1", "whisper-base-1.0.0"
    session.add(
        TranscriptCorrection(
            case_id=s.cases["draft_central"].id,
            recording_id=s.recordings["draft_central"].id,
            user_id=s.users["agent"].id,
            text="มีนักเรียนถูกรังแกที่โรงเรียนเกือบทุกวัน",
            at=now,
        )
    )
    session.flush()


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    with get_database(app).session() as session:
        s = seed_console(
            session,
            cipher=FieldCipher(config.data_key),
            recordings_dir=config.recordings_dir,
            recording_key=config.recording_key,
        )
        _more_to_show(session, app, s)
        session.commit()
        return World(
            password=s.password,
            cases={k: c.id for k, c in s.cases.items()},
            offices={k: o.id for k, o in s.offices.items()},
        )


def _token(client: FlaskClient, path: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def signed_in(app: Flask, world: World, username: str) -> FlaskClient:
    client = app.test_client()
    form = {"username": username, "password": world.password, "csrf_token": _token(client, "/console/login")}
    assert client.post("/console/login", data=form).status_code == 302
    return client


# Who sees what: every role signs in and opens every page of the console; a page the role may not see
# answers 403/404 with the console's error page, which must be Thai too.
ROLES = {"agent": "agent", "operator": "op50", "head": "head50", "action": "action50", "admin": "admin50"}


def pages(world: World) -> Iterator[str]:
    yield from ("/console/", "/console/approvals", "/console/assignments", "/console/notifications")
    yield from ("/console/notifications/failed", "/console/offices", "/console/me", "/console/worker")
    yield "/console/privacy"  # office admins only
    for state in ("open", "draft", "routed", "proposed", "assigned", "in_action", "resolved", "all"):
        yield f"/console/?state={state}"
    for case_id in world.cases.values():
        yield f"/console/cases/{case_id}"
    for office_id in world.offices.values():
        yield f"/console/offices/{office_id}"
    yield "/console/cases/999999"
    yield "/console/audit"  # the audit trail: its pages for admins, refused to the others
    for case_id in world.cases.values():
        yield f"/console/audit/cases/{case_id}"


def report(found: list[str]) -> str:
    """Each English word once, with the first page it was found on."""
    first: dict[str, str] = {}
    for line in found:
        where, word = line.rsplit(": ", 1)
        first.setdefault(word, where)
    return "\n".join(f"{word!r} on {where}" for word, where in first.items())


def _findings(page: str, html: str) -> list[str]:
    return [f"{page}: {word}" for word in english_words(visible_text(html))]


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_console_page_reads_in_thai(app: Flask, world: World, role: str) -> None:
    client = signed_in(app, world, ROLES[role])
    found: list[str] = []
    shown = 0
    for page in pages(world):
        response = client.get(page)
        assert response.status_code in {200, 403, 404}, page
        shown += response.status_code == 200
        found += _findings(page, response.get_data(as_text=True))
    assert shown >= 8, "the role saw too few pages for the check to mean anything"
    assert found == [], "untranslated text on Thai pages:\n" + report(found)


def test_the_sign_in_page_and_the_reveal_read_in_thai(app: Flask, world: World) -> None:
    anonymous = app.test_client()
    found = _findings("/console/login", anonymous.get("/console/login").get_data(as_text=True))
    operator = signed_in(app, world, "op50")
    case_id = world.cases["routed_50"]
    form = {"reason": "โทรกลับตามที่ผู้แจ้งขอ", "csrf_token": _token(operator, "/console/approvals")}
    shown = operator.post(f"/console/cases/{case_id}/reveal", data=form)
    assert shown.status_code == 200 and 'class="number"' in shown.get_data(as_text=True)
    found += _findings("reveal", shown.get_data(as_text=True))
    assert found == [], "untranslated text on Thai pages:\n" + "\n".join(found)


def test_the_machine_draft_label_and_the_word_comparison_read_in_thai(app: Flask, world: World) -> None:
    html = signed_in(app, world, "agent").get(f"/console/cases/{world.cases['draft_central']}").get_data(True)
    assert 'class="draft-note"' in html and 'class="words diff"' in html and "<ins>" in html
    assert _findings("draft_central", html) == []


def test_the_english_check_itself_finds_english() -> None:
    html = '<p>ส่งต่อ no_model <b>via</b>: keys</p><script>var x;</script><td translate="no">HTTP 500<br></td>'
    assert english_words(visible_text(html)) == [
        "no_model",
        "via",
        "keys",
    ]
    assert english_words("หัวหน้า SC-Operator ส่ง SMS ถึง op50 (--name)") == []


# ---- refusals ---------------------------------------------------------------------------------------------


REFUSALS = {"WorkflowError", "NotPermitted", "InvalidInput", "AccountError", "PhoneError"}


def _named(module: object, node: ast.expr) -> object:
    """The value of a name (`UNDER_WAY`, `callbacks.UNDER_WAY`) a refusal raises, as its module sees it."""
    if isinstance(node, ast.Name):
        return getattr(module, node.id)
    if isinstance(node, ast.Attribute):
        return getattr(_named(module, node.value), node.attr)
    return ast.unparse(node)  # not a marked literal nor a name: shown as is, and flagged


def raised_refusals() -> list[tuple[str, str, str]]:
    """(where, exception, msgid) of every refusal raised in cases/, found in the source as it is."""
    found = []
    for path in sorted((ROOT / "cases").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or not isinstance(node.exc, ast.Call):
                continue
            name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
            if name not in REFUSALS or not node.exc.args:
                continue
            first = node.exc.args[0]
            if isinstance(first, ast.Call) and getattr(first.func, "id", "") == "N_":
                first = first.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                msgid = first.value
            else:
                msgid = str(_named(module, first))
            found.append((f"{path.relative_to(ROOT)}:{node.lineno}", name, msgid))
    return found


def _sample(msgid: str) -> dict[str, object]:
    """Thai stand-ins for a message's %(name)s parameters (the marked words are checked on their own)."""
    return {name: (3 if kind == "d" else "ตัวอย่าง") for name, kind in re.findall(r"%\((\w+)\)([sd])", msgid)}


def test_every_refusal_raised_in_cases_reads_in_thai(app: Flask) -> None:
    refusals = raised_refusals()
    assert len(refusals) >= 30 and {r[1] for r in refusals} >= {
        "NotPermitted",
        "InvalidInput",
        "AccountError",
    }
    found = []
    with app.test_request_context("/console/"):
        for where, name, msgid in refusals:
            exc: Exception = (
                accounts.AccountError(msgid, **_sample(msgid))
                if name == "AccountError"
                else WorkflowError(msgid, **_sample(msgid))
            )
            found += [f"{where} {name}: {word}" for word in english_words(error_text(exc))]
    assert found == [], "refusals that reach Thai staff in English:\n" + "\n".join(found)


def test_refusals_as_raised_and_the_words_that_fill_them_read_in_thai(app: Flask, world: World) -> None:
    refused: list[Exception] = [IllegalMove(move, state) for state in CaseStatus for move in Move]
    assert {(s, m) for s in CaseStatus for m in Move} - set(TRANSITIONS), "no illegal move to show"
    with get_database(app).session() as session:
        for attempt in (
            lambda: accounts.create_user(session, "x", "ชื่อ", "long enough password"),
            lambda: accounts.create_user(session, "someone", " ", "long enough password"),
            lambda: accounts.create_user(session, "someone", "ชื่อ", "long enough password", locale="xx"),
            lambda: accounts.create_user(session, "someone", "ชื่อ", "short"),
            lambda: accounts.create_user(session, "op50", "ชื่อ", "long enough password"),
            lambda: phones.check_number("not a number", phones.PhonePolicy()),
            lambda: phones.check_number("+8613912345678", phones.PhonePolicy()),
            lambda: phones.check_number("+661900123456", phones.PhonePolicy()),
        ):
            with pytest.raises(accounts.AccountError) as account_refusal:
                attempt()
            refused.append(account_refusal.value)
        pending = select(ForwardingProposal).where(ForwardingProposal.status == "pending")
        proposal = session.scalars(pending).one()
        operator = session.scalars(select(User).where(User.username == "op50")).one()
        with pytest.raises(NotPermitted) as not_a_head:
            workflow.decide_proposal(session, proposal, operator, approve=True)
        refused.append(not_a_head.value)
    with app.test_request_context("/console/"):
        texts = [error_text(exc) for exc in refused]
        for table in (STATE_WORDS, MOVE_WORDS, ROLE_WORDS):
            texts += [translate(Text(word)) for word in table.values()]
    found = [f"{t!r}: {w}" for t in texts for w in english_words(t)]
    assert found == [], "\n".join(found)
