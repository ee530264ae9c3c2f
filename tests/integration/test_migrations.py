"""The Alembic migrations build exactly the models' schema, and every downgrade runs (SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import cases.models
import cases.staff  # noqa: F401 - registers its tables on Base.metadata, as migrations/env.py does
import transcription.models  # noqa: F401
from app import MIGRATIONS_DIR, upgrade_database
from cases.search_index import UNMAPPED
from infra.db import Base, make_engine
from tests.conftest import database_url


def _alembic(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = url
    return cfg


def _differences(url: str) -> list[Any]:
    """What `alembic revision --autogenerate` would write: tables, columns, types, indexes, keys, defaults."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    # The search's FTS5 table and expression index live beside the models, by design.
                    "include_name": lambda name, _type, _parents: name not in UNMAPPED,
                },
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _revisions_base_to_head() -> list[str]:
    script = ScriptDirectory.from_config(_alembic(""))
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def test_the_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    upgrade_database(url)
    assert _tables(url) >= set(Base.metadata.tables)  # the comparison below looked at real tables
    assert _differences(url) == []


def test_every_downgrade_runs_and_the_upgrades_run_again(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    upgrade_database(url)
    revisions = _revisions_base_to_head()
    assert len(revisions) >= 5
    cfg = _alembic(url)
    # One step at a time, so a broken downgrade is named by the step that fails.
    for below in [*reversed(revisions[:-1]), "base"]:
        command.downgrade(cfg, "-1")
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                assert MigrationContext.configure(conn).get_current_revision() == (
                    None if below == "base" else below
                )
        finally:
            engine.dispose()
    assert _tables(url) <= {"alembic_version"}  # base: none of the models' tables is left
    for revision in revisions:
        command.upgrade(cfg, revision)
    assert _differences(url) == []
