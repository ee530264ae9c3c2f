"""Audit, event and version rows are append-only in the database itself (SQLite and PostgreSQL triggers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from app import upgrade_database
from cases import audit, workflow
from cases.models import CallEvent, Case, CaseEvent, HazardGroup, SummaryVersion, TranscriptCorrection
from cases.offices import load_offices
from cases.staff import AppendOnlyUnlock, AuditEvent, User
from infra.crypto import FieldCipher
from infra.db import Database
from tests.conftest import database_url
from tests.integration.test_migrations import _alembic
from tests.support.seed import seed_console

TABLES = ("audit_events", "case_events", "call_events", "summary_versions", "transcript_corrections")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = database_url(tmp_path)
    upgrade_database(url)
    database = Database(url)
    with database.session() as session:
        load_offices(session)
        s = seed_console(session, cipher=_cipher())
        # One row in each table: a transcript correction and a refused reveal on top of the seed.
        case, agent = s.cases["draft_central"], s.users["agent"]
        recording = s.recordings["draft_central"]
        session.refresh(recording)  # open_draft_case linked it to the case with a Core UPDATE
        workflow.correct_transcript(session, case, agent, recording, "แก้ไขแล้ว")
        audit.record(session, agent.id, "case_viewed", case_id=case.id)
    yield database
    database.dispose()


def _cipher() -> FieldCipher:
    return FieldCipher(Fernet.generate_key().decode())


def _refused(database: Database, sql: str) -> str:
    with pytest.raises((IntegrityError, DBAPIError)) as raised, database.session() as session:
        session.execute(text(sql))
    return str(raised.value.orig)


@pytest.mark.parametrize("table", TABLES)
def test_update_and_delete_are_refused(db: Database, table: str) -> None:
    with db.session() as session:
        before = session.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608 - our own names
    assert before, f"the test needs rows in {table}"
    assert "append-only" in _refused(db, f"UPDATE {table} SET id = id")  # noqa: S608
    assert "append-only" in _refused(db, f"DELETE FROM {table}")  # noqa: S608
    with db.session() as session:
        assert session.scalar(text(f"SELECT count(*) FROM {table}")) == before  # noqa: S608


def test_the_orm_cannot_edit_an_event_either(db: Database) -> None:
    with pytest.raises((IntegrityError, DBAPIError)), db.session() as session:
        event = session.scalars(select(CaseEvent).limit(1)).one()
        event.detail = {"rewritten": True}
    with pytest.raises((IntegrityError, DBAPIError)), db.session() as session:
        session.delete(session.scalars(select(AuditEvent).limit(1)).one())
    with pytest.raises((IntegrityError, DBAPIError)), db.session() as session:
        session.delete(session.scalars(select(CallEvent).limit(1)).one())


def test_inserting_stays_allowed(db: Database) -> None:
    with db.session() as session:
        audit.record(session, None, "case_viewed")
        session.add(CaseEvent(case_id=session.scalars(select(Case.id).limit(1)).one(), action="summarised"))


def test_an_unlocked_transaction_may_delete_and_is_audited_and_the_lock_comes_back(db: Database) -> None:
    with db.session() as session:
        victim = session.scalars(select(CaseEvent.id).order_by(CaseEvent.id).limit(1)).one()
        with audit.unlocked(session, "retention test", None):
            session.execute(text("DELETE FROM case_events WHERE id = :id"), {"id": victim})
            session.execute(text("UPDATE call_events SET detail = '{}'"))
    with db.session() as session:
        assert session.get(CaseEvent, victim) is None
        assert session.scalar(select(func.count(AppendOnlyUnlock.id))) == 0
        (opened,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "append_only_unlocked"))
        assert opened.detail == {"why": "retention test"}
    assert "append-only" in _refused(db, "DELETE FROM case_events")
    assert "append-only" in _refused(db, "DELETE FROM audit_events")  # the unlock's own row stays


def test_a_transaction_that_leaves_the_way_open_cannot_commit(db: Database) -> None:
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(AppendOnlyUnlock(purpose="forgotten", must_close=0))
        session.flush()
        session.execute(text("DELETE FROM summary_versions"))  # let through inside the transaction
    with db.session() as session:
        assert session.scalar(select(func.count(AppendOnlyUnlock.id))) == 0
        assert session.scalar(select(func.count(SummaryVersion.id)))  # nothing was deleted


def test_the_migration_keeps_the_summaries_written_before_it(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    cfg = _alembic(url)
    upgrade_database(url)  # on PostgreSQL a copy of the run's template: at head already
    command.downgrade(cfg, "0007")
    database = Database(url)
    with database.session() as session:
        load_offices(session)
    with database.session() as session:
        office = session.scalar(text("SELECT id FROM offices WHERE code = '50'"))
        session.execute(
            text(
                "INSERT INTO users (username, display_name, password_hash, active, locale, failed_logins, "
                "session_token, created_at) VALUES ('op', 'Op', 'x', true, 'th', 0, 't', CURRENT_TIMESTAMP)"
            )
        )
        session.execute(
            text(
                "INSERT INTO cases (reference, status, category, ivr_category, language, office_id, "
                "callback_choice, opened_by, summary, created_at, updated_at) VALUES ('10000003', 'routed', "
                "'violence', 'violence', 'th', :office, 'none', 'caller', 'สรุปเดิม', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            ),
            {"office": office},
        )
        session.execute(
            text(
                "INSERT INTO case_events (case_id, at, actor_id, action, detail) SELECT c.id, "
                "CURRENT_TIMESTAMP, u.id, 'summarised', '{}' FROM cases c, users u"
            )
        )
    database.dispose()
    command.upgrade(cfg, "head")
    database = Database(url)
    with Session(database.engine) as session:
        (version,) = session.scalars(select(SummaryVersion))
        user = session.scalars(select(User)).one()
        assert (version.text, version.category, version.user_id) == ("สรุปเดิม", HazardGroup.VIOLENCE, user.id)
        assert session.scalar(select(func.count(TranscriptCorrection.id))) == 0
    database.dispose()
