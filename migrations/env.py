"""Alembic environment: the URL comes from the app's configuration, the metadata from the models."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

import cases.models
import cases.staff  # noqa: F401
import transcription.models  # noqa: F401
from infra.db import Base, UTCDateTime, make_engine

config = context.config


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our UTC column type as a plain timezone-aware DateTime: migrations import no app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


target_metadata = Base.metadata


def _include_name(name: str | None, type_: Any, parents: Any) -> bool:
    """Autogenerate leaves alone what migration 0015 made beside the models (the search's FTS5 table,
    its shadow tables and the PostgreSQL expression index)."""
    from cases.search_index import UNMAPPED

    return name not in UNMAPPED


def run_migrations_offline() -> None:
    context.configure(
        url=config.attributes["database_url"],
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.attributes["database_url"]
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
                render_as_batch=url.startswith("sqlite"),
                compare_type=True,
                render_item=render_item,
                include_name=_include_name,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
