"""The `backup` command group: `backup create PATH` and `backup restore PATH [--force]`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from backups.create import Source, create_backup
from backups.manifest import BackupError
from backups.restore import restore_backup
from infra.files import disk_fault


def backup_group(source: Callable[[], Source], release: Callable[[], None]) -> click.Group:
    """Commands over the instance `source()` describes; `release()` closes the app's connections."""

    @click.group("backup")
    def group() -> None:
        """Backups of the database and the data dir (README "Backups")."""

    @group.command("create")
    @click.argument("path", type=click.Path(path_type=Path))
    def create_cmd(path: Path) -> None:
        """Write a backup folder at PATH (SQLite and the data dir; PostgreSQL: the data dir)."""
        try:
            manifest = create_backup(source(), path)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"backup {path.resolve()}: {len(manifest.files)} files, schema {manifest.schema_revision}, "
            f"database {manifest.database['kind']}"
            + (" (not included: pg_dump it, README Backups)" if manifest.database["kind"] != "sqlite" else "")
        )

    @group.command("restore")
    @click.argument("path", type=click.Path(path_type=Path))
    @click.option("--force", is_flag=True, help="Overwrite an instance that is not empty.")
    def restore_cmd(path: Path, force: bool) -> None:
        """Verify the backup at PATH, then restore it into this (empty) instance and migrate it."""
        try:
            done = restore_backup(path, source(), force=force, release=release)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # our own disk (full, read-only): the folder and the system's words
            raise click.ClickException(disk_fault("cannot restore into", source().data_dir, exc)) from None
        for warning in done.warnings:
            click.echo(f"warning: {warning}", err=True)
        migrated = f", migrated from {done.migrated_from}" if done.migrated_from else ""
        click.echo(
            f"restored {path.resolve()}: {done.files} data files{migrated}, {done.moved_paths} paths moved"
        )

    return group
