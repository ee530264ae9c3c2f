"""Alembic migrations of the hotline schema, and `upgrade_database` that applies them (`db upgrade`)."""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent


def upgrade_database(url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations to the database at `url`."""
    # Imported here: the web app and the worker never need Alembic, only whoever migrates.
    from alembic import command
    from alembic.config import Config as AlembicConfig

    alembic_cfg = AlembicConfig()
    alembic_cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    alembic_cfg.attributes["database_url"] = url
    command.upgrade(alembic_cfg, revision)
