"""The schema revision of a database and of this code (Alembic's), and the hotline's version."""

from __future__ import annotations

import hashlib
from importlib import metadata
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, inspect, text

from migrations import MIGRATIONS_DIR

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory


def _script() -> ScriptDirectory:
    # Imported here, as in migrations.upgrade_database: only whoever migrates or backs up needs Alembic.
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None, "the migrations have one head"
    return str(head)


def known_revision(revision: str) -> bool:
    """True when this code's migrations hold `revision` (so it can be upgraded from)."""
    return revision in {rev.revision for rev in _script().walk_revisions()}


def database_revision(url: str) -> str | None:
    """The revision a database is at; None when it has no alembic_version table (never migrated)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def hotline_version() -> str:
    try:
        return metadata.version("moe-safety-hotline")
    except metadata.PackageNotFoundError:
        return "unknown"


def key_fingerprints(data_key: str) -> list[str]:
    """Short one-way fingerprints of the configured data key(s), the encrypting one first.

    A fingerprint tells whether a restore runs under the key a backup was made with; it cannot give
    the key back (a sha256 of 32 random bytes). Several keys are comma-separated (key rotation).
    """
    keys = [k.strip() for k in data_key.split(",") if k.strip()]
    return [hashlib.sha256(b"hotline-backup-key\0" + k.encode()).hexdigest()[:16] for k in keys]
