"""The `db` command group: `db upgrade` applies the migrations to the configured database."""

from __future__ import annotations

from collections.abc import Callable

import click

from migrations import upgrade_database


def db_group(database_url: Callable[[], str], after_upgrade: Callable[[], str] | None = None) -> click.Group:
    """`db upgrade` against the URL `database_url()` gives when it runs (the app's configuration);
    `after_upgrade` then brings stored data up to date (it seals plain recordings) and says what it did."""

    @click.group("db")
    def group() -> None:
        """Database schema."""

    @group.command("upgrade")
    def db_upgrade() -> None:
        """Apply the migrations (idempotent)."""
        upgrade_database(database_url())
        click.echo("database is at the latest revision")
        if after_upgrade is not None:
            click.echo(after_upgrade())

    return group
