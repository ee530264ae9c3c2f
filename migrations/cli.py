"""The `db` command group: `db upgrade` applies the migrations to the configured database."""

from __future__ import annotations

from collections.abc import Callable

import click

from migrations import upgrade_database


def db_group(database_url: Callable[[], str]) -> click.Group:
    """`db upgrade` against the URL `database_url()` gives when it runs (the app's configuration)."""

    @click.group("db")
    def group() -> None:
        """Database schema."""

    @group.command("upgrade")
    def db_upgrade() -> None:
        """Apply the migrations (idempotent)."""
        upgrade_database(database_url())
        click.echo("database is at the latest revision")

    return group
