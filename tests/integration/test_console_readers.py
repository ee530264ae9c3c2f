"""Readers never take the write lock: console pages, exports and the user loader read beside a held writer.

Another program holds every writer out: on SQLite a connection of its own in BEGIN IMMEDIATE plus the
write gate's lock file (where a webhook queues first); on PostgreSQL an EXCLUSIVE lock on every table,
which lets readers through and stops writers. Pages still answer; forms wait and then save.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from werkzeug.test import TestResponse

from app import get_database
from cases.accounts import check_password, record_sign_in, set_password
from cases.models import Case, Channel, ForwardingProposal, Notification, NotificationStatus
from cases.reference import display_reference
from cases.staff import AuditEvent, User
from console.audit import read_audits
from console.base import db
from infra.clock import utcnow
from infra.config import Config
from infra.crypto import FieldCipher
from infra.db import Base, Database
from tests.conftest import on_postgresql
from tests.support.seed import seed_bulk_cases, seed_console
from transcription.models import Transcript

HANG = 10.0  # seconds: only a bound for a hang; a page that waited for the lock would wait 30 s
READ_ONLY = r"read-only|readonly"  # PostgreSQL's and SQLite's words for a refused write
STILL_WAITING = 0.5  # seconds a writer is watched to stay queued behind the held lock


class WritersHeldOut:
    """Another program that holds every writer of the database out until release()."""

    def __init__(self, database: Database) -> None:
        self._release: Callable[[], None] | None = None
        if on_postgresql():
            conn = psycopg.connect(database.url.replace("postgresql+psycopg://", "postgresql://"))
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")  # reads pass, writes wait

            def release_pg() -> None:
                conn.rollback()
                conn.close()

            self._release = release_pg
            return
        path = make_url(database.url).database
        assert path
        gate = os.open(f"{path}-write.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(gate, fcntl.LOCK_EX)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")

        def release_sqlite() -> None:
            other.execute("ROLLBACK")
            other.close()
            fcntl.flock(gate, fcntl.LOCK_UN)
            os.close(gate)

        self._release = release_sqlite

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


@pytest.fixture
def hold(app: Flask) -> Iterator[Callable[[], WritersHeldOut]]:
    held: list[WritersHeldOut] = []

    def start() -> WritersHeldOut:
        held.append(WritersHeldOut(get_database(app)))
        return held[-1]

    yield start
    for h in held:
        h.release()


class Background:
    """A call on a thread of its own, so that a test can see it wait (or answer) while a lock is held."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._result: list[Any] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                self._result.append(call())
            except BaseException as exc:  # handed to the test in result()
                self._error.append(exc)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def waiting_after(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return self._thread.is_alive()

    def result(self, bound: float = HANG) -> Any:
        self._thread.join(bound)
        assert not self._thread.is_alive(), f"no answer within {bound:.0f} s"
        if self._error:
            raise self._error[0]
        return self._result[0]


def promptly(call: Callable[[], Any]) -> Any:
    return Background(call).result()


@dataclass
class World:
    password: str
    cases: dict[str, int]
    references: dict[str, str]
    users: dict[str, int]
    offices: dict[str, int]
    recordings: dict[str, int]
    transcripts: dict[str, int]
    pending_proposal: int
    notifications: dict[str, int] = field(default_factory=dict)


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    """seed_console's staff and cases, 30 more cases, and a console and a failed SMS notification."""
    with get_database(app).writing() as session:
        s = seed_console(
            session,
            cipher=FieldCipher(config.data_key),
            recordings_dir=config.recordings_dir,
            recording_key=config.recording_key,
        )
        seed_bulk_cases(session, 30, office_codes=["50"])
        now = utcnow()
        console = Notification(
            dedupe_key="readers-console",
            kind="follow_up_message",
            channel=Channel.CONSOLE,
            case_id=s.cases["routed_50"].id,
            user_id=s.users["head50"].id,
            subject="ข้อความติดตามเรื่อง",
            body="มีข้อความเพิ่มเติม",
            link=f"/console/cases/{s.cases['routed_50'].id}",
            status=NotificationStatus.SENT,
            created_at=now,
        )
        failed = Notification(
            dedupe_key="readers-sms",
            kind="at_due",
            channel=Channel.SMS,
            case_id=s.cases["routed_50"].id,
            user_id=s.users["op50"].id,
            subject="โทรกลับ",
            body="ถึงเวลาโทรกลับ",
            status=NotificationStatus.FAILED,
            attempts=3,
            created_at=now - timedelta(minutes=5),
        )
        session.add_all([console, failed])
        session.flush()
        recordings = {k: r.id for k, r in s.recordings.items()}
        return World(
            password=s.password,
            cases={k: c.id for k, c in s.cases.items()},
            references={k: display_reference(c.reference) for k, c in s.cases.items()},
            users={k: u.id for k, u in s.users.items()},
            offices={k: o.id for k, o in s.offices.items()},
            recordings=recordings,
            transcripts={
                k: session.scalars(select(Transcript.id).where(Transcript.recording_id == rid)).one()
                for k, rid in recordings.items()
            },
            pending_proposal=session.scalars(
                select(ForwardingProposal.id).where(ForwardingProposal.status == "pending")
            ).one(),
            notifications={"console": console.id, "failed": failed.id},
        )


def token(client: FlaskClient) -> str:
    page = client.get("/console/approvals" if _signed_in(client) else "/console/login")
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True))
    assert match
    return match.group(1)


def _signed_in(client: FlaskClient) -> bool:
    with client.session_transaction() as sess:
        return "_user_id" in sess


def as_user(app: Flask, world: World, username: str) -> FlaskClient:
    client = app.test_client()
    form = {"username": username, "password": world.password, "csrf_token": token(client)}
    assert client.post("/console/login", data=form).status_code == 302
    return client


def get(client: FlaskClient, path: str, method: str = "GET") -> TestResponse:
    """A page read in full (a streamed recording closes its file)."""
    with client.open(path, method=method) as response:
        response.get_data()
        return response


def count(app: Flask, model: Any, *where: Any) -> int:
    with get_database(app).read_session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# ---- pages answer while the writers are held out ------------------------------------------------------


def pages(world: World) -> dict[str, list[tuple[str, int, str]]]:
    """Per user: every console page they may read, its status and words it must show (real rows)."""
    c, ref = world.cases, world.references
    case_pages = [
        (f"/console/cases/{c[k]}", 200, ref[k])
        for k in ("routed_50", "proposed_50", "assigned_50", "in_action_50", "resolved_50")
    ]
    recording, transcript = world.recordings["routed_50"], world.transcripts["routed_50"]
    return {
        "head50": [
            ("/console/", 200, ref["routed_50"]),
            ("/console/?state=proposed&order=newest", 200, ref["proposed_50"]),
            *case_pages,
            ("/console/approvals", 200, ref["proposed_50"]),
            ("/console/notifications", 200, "ข้อความติดตามเรื่อง"),
            ("/console/notifications/failed", 200, "โทรกลับ"),
            ("/console/offices", 200, "เชียงใหม่"),
            (f"/console/offices/{world.offices['50']}", 200, "สมชาย ใจดี"),
            ("/console/me", 200, "ประเสริฐ หัวหน้า"),
            (f"/console/recordings/{recording}/audio", 200, ""),
            (f"/console/transcripts/{transcript}", 302, ""),
            ("/console/login", 302, ""),
        ],
        "action50": [
            ("/console/assignments", 200, ref["in_action_50"]),
            (f"/console/cases/{c['in_action_50']}", 200, ref["in_action_50"]),
        ],
        "agent": [
            ("/console/", 200, ref["draft_central"]),
            (f"/console/cases/{c['draft_central']}", 200, ref["draft_central"]),
        ],
        "admin50": [
            (f"/console/offices/{world.offices['50']}", 200, "สมชาย ใจดี"),
            ("/console/notifications/failed", 200, "โทรกลับ"),
        ],
    }


def test_every_page_answers_while_the_writers_are_held_out(
    app: Flask, world: World, hold: Callable[[], WritersHeldOut]
) -> None:
    wanted = pages(world)
    clients = {user: as_user(app, world, user) for user in wanted}  # signing in writes: before the hold
    audited = count(app, AuditEvent)
    held = hold()
    for user, rows in wanted.items():
        for path, status, words in rows:
            response = promptly(lambda c=clients[user], p=path: get(c, p))
            assert response.status_code == status, (user, path)
            if path.endswith("/audio"):
                assert response.data[:4] == b"RIFF"
                continue
            body = response.get_data(as_text=True)
            assert words in body, (user, path, words)
            if status == 200:
                assert "ออกจากระบบ" in body, (user, path)  # signed in: the user loader answered too
        # A HEAD runs the same view.
        assert promptly(lambda c=clients[user]: get(c, "/console/", "HEAD")).status_code == 200
    assert count(app, AuditEvent) == audited  # nothing was written (yet), nothing was refused
    # The case views and the play are audited all the same: their rows are written once the lock comes.
    held.release()
    assert read_audits(app).drain(HANG)
    written = count(app, AuditEvent, AuditEvent.id > 0) - audited
    views = count(app, AuditEvent, AuditEvent.action == "case_viewed")
    plays = count(app, AuditEvent, AuditEvent.action == "recording_played")
    assert (written, views, plays) == (8, 7, 1)


def test_a_form_waits_for_the_writers_then_saves_while_pages_still_answer(
    app: Flask, world: World, hold: Callable[[], WritersHeldOut]
) -> None:
    head = as_user(app, world, "head50")
    reader = as_user(app, world, "op50")
    csrf = token(head)
    unread = Notification.read_at.is_(None), Notification.id == world.notifications["console"]
    assert count(app, Notification, *unread) == 1
    held = hold()
    form = Background(lambda: head.post("/console/notifications/read-all", data={"csrf_token": csrf}))
    assert form.waiting_after(STILL_WAITING)  # a write waits its turn
    # ...and staff who only read are not queued behind it.
    page = promptly(lambda: get(reader, "/console/"))
    assert page.status_code == 200 and world.references["routed_50"] in page.get_data(as_text=True)
    assert form.waiting_after(0.1)
    held.release()
    answer: TestResponse = form.result()
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/console/notifications")
    assert count(app, Notification, *unread) == 0


def test_a_refused_page_writes_its_audit_row_after_the_reads(
    app: Flask, world: World, hold: Callable[[], WritersHeldOut]
) -> None:
    outsider = as_user(app, world, "op10")
    foreign = f"/console/cases/{world.cases['routed_50']}"
    held = hold()
    refused = Background(lambda: get(outsider, foreign))
    # The refusal is a write (an audit row): it, and only it, queues for the lock.
    assert refused.waiting_after(STILL_WAITING)
    assert promptly(lambda: get(outsider, "/console/")).status_code == 200
    held.release()
    assert refused.result().status_code == 404
    rows = count(
        app, AuditEvent, AuditEvent.action == "access_refused", AuditEvent.user_id == world.users["op10"]
    )
    assert rows == 1
    # Unheld, the next refusal lands at once, on the case it names.
    assert get(outsider, f"/console/recordings/{world.recordings['routed_50']}/audio").status_code == 404
    with get_database(app).read_session() as session:
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).one()
        assert (last.action, last.detail) == (
            "access_refused",
            {"what": "recording", "id": world.recordings["routed_50"]},
        )


def test_exports_and_the_users_list_read_beside_a_held_writer(
    app: Flask, world: World, hold: Callable[[], WritersHeldOut]
) -> None:
    runner = app.test_cli_runner()
    total = count(app, Case)
    hold()
    export = promptly(lambda: runner.invoke(args=["cases", "export"]))
    assert export.exit_code == 0, export.output
    records = json.loads(export.output)
    assert len(records) == total == 39 and world.references["draft_central"] in {
        display_reference(r["reference"]) for r in records
    }
    users = promptly(lambda: runner.invoke(args=["users", "list"]))
    assert users.exit_code == 0 and "head@50" in users.output and "op50\t" in users.output
    assert promptly(lambda: app.test_client().get("/healthz")).status_code == 200


# ---- the read-only session refuses writes -------------------------------------------------------------


def test_the_read_session_refuses_every_write(app: Flask, world: World) -> None:
    database = get_database(app)
    uid = world.users["op50"]
    with database.read_session() as session:
        if on_postgresql():
            assert session.scalar(text("SHOW transaction_read_only")) == "on"
        else:
            assert session.scalar(text("PRAGMA query_only")) == 1
        user = session.get(User, uid)
        assert user is not None
        user.display_name = "changed on a page"
        with pytest.raises(DBAPIError, match=READ_ONLY):
            session.flush()
        session.rollback()
        with pytest.raises(DBAPIError, match=READ_ONLY):
            session.execute(update(User).where(User.id == uid).values(display_name="changed"))
        session.rollback()
        with pytest.raises(DBAPIError, match=READ_ONLY):
            session.execute(insert(AuditEvent).values(at=utcnow(), action="written_on_a_page", detail={}))
    with database.read_session() as session:
        assert session.scalar(select(User.display_name).where(User.id == uid)) == "สมชาย ใจดี"
    assert count(app, AuditEvent, AuditEvent.action == "written_on_a_page") == 0


def test_a_get_view_that_writes_by_accident_fails_and_writes_nothing(app: Flask, world: World) -> None:
    def careless() -> str:
        db().add(AuditEvent(at=utcnow(), user_id=None, action="written_on_get", detail={}))
        db().commit()
        return "written"

    app.add_url_rule("/console/careless", view_func=careless, methods=["GET", "POST"])
    client = app.test_client()
    with pytest.raises(DBAPIError, match=READ_ONLY):
        client.get("/console/careless")
    assert count(app, AuditEvent, AuditEvent.action == "written_on_get") == 0
    # The same view on POST works in the request's write transaction.
    written = client.post("/console/careless", data={"csrf_token": token(client)})
    assert written.get_data(as_text=True) == "written"
    assert count(app, AuditEvent, AuditEvent.action == "written_on_get") == 1


def test_a_page_reads_one_snapshot(app: Flask, world: World) -> None:
    database = get_database(app)
    case_id = world.cases["routed_50"]
    with database.read_session() as page:
        before = page.scalar(select(Case.summary).where(Case.id == case_id))
        with database.writing() as session:
            session.execute(update(Case).where(Case.id == case_id).values(summary="written meanwhile"))
        # Still the page's snapshot: its later SELECTs agree with its first.
        assert page.scalar(select(Case.summary).where(Case.id == case_id)) == before != "written meanwhile"
        page.commit()
        assert page.scalar(select(Case.summary).where(Case.id == case_id)) == "written meanwhile"


# ---- signing in: scrypt on the reader, the count under the lock ------------------------------------------


def test_a_sign_in_is_decided_by_the_account_as_it_is_under_the_lock(app: Flask, world: World) -> None:
    database = get_database(app)
    with database.read_session() as session:
        good = check_password(session, "op50", world.password)
        wrong = check_password(session, "op50", "not the password")
    assert good.good and not wrong.good and good.user_id == world.users["op50"]
    with database.writing() as session:
        assert record_sign_in(session, wrong) is None
        user = record_sign_in(session, good)
        assert user is not None and user.id == world.users["op50"] and user.failed_logins == 0
    # A new password set between the check and the count: the old one signs nobody in, counts nothing.
    with database.writing() as session:
        changed = session.get(User, world.users["op50"])
        assert changed is not None
        set_password(session, changed, "another long password")
    with database.writing() as session:
        assert record_sign_in(session, good) is None and record_sign_in(session, wrong) is None
        again = session.get(User, world.users["op50"])
        assert again is not None and again.failed_logins == 0
