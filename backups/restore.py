"""`backup restore`: check every file first, refuse a non-empty instance, then put it all back.

SQLite: the database file and the data dir. PostgreSQL: the data dir, after `pg_restore` has put the
database back (README "Backups"). Then the migrations run when the backup's revision is older, and the
recordings' stored paths are moved to this instance's data dir.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Text, create_engine, func, inspect, literal, select, text, update

from backups import schema
from backups.create import SKIPPED_FOLDERS, Source
from backups.keys import check_keys
from backups.manifest import DATA_FOLDER, BackupError, Manifest, copy_private, verify
from infra.config import LOCAL_SECRETS_FILE
from infra.files import SQLITE_COMPANIONS, make_private_dirs
from migrations import upgrade_database
from transcription.models import Recording

# Rows in these tables do not make an instance "in use": the schema's own and the offices (`offices load`).
REFERENCE_TABLES = {"alembic_version", "offices"}


@dataclass
class Restored:
    """What a restore did, for the command to print."""

    files: int = 0
    migrated_from: str | None = None
    moved_paths: int = 0
    warnings: list[str] = field(default_factory=list)


def restore_backup(
    folder: Path, target: Source, *, force: bool = False, release: Callable[[], None] = lambda: None
) -> Restored:
    """Restore the backup at `folder` into the instance `target` describes.

    Nothing is written before every checksum is verified, the schema revision is known to this code
    and (without `force`) the instance is found empty. `release` closes the app's own connections
    before the database file is replaced.
    """
    folder = folder.resolve()
    manifest = Manifest.read(folder)
    verify(folder, manifest)
    revision = manifest.schema_revision
    if revision is not None and not schema.known_revision(revision):
        raise BackupError(
            f"backup {folder}: schema revision {revision} is unknown to this code (made by a newer hotline?)"
        )
    sqlite_path = target.sqlite_path
    kind = manifest.database.get("kind")
    if (kind == "sqlite") != (sqlite_path is not None):
        raise BackupError(
            f"backup {folder} holds a {kind} instance's data; DATABASE_URL here is not {kind}"
            + (" (PostgreSQL: pg_dump/pg_restore, README Backups)" if kind == "postgresql" else "")
        )
    # This instance's keys must open what the backup holds: restored, it would not start otherwise.
    warnings = check_keys(
        folder, manifest, target.data_key, target.cipher, target.sealer, target.database_url
    )
    if not force:
        _refuse_if_in_use(target)
    done = Restored(warnings=warnings)
    if sqlite_path is not None:
        release()
        _put_database(folder / manifest.database["file"], sqlite_path, manifest)
    else:
        _check_postgresql(target.database_url, revision)
    done.files = _put_data(folder, manifest, target.data_dir.resolve())
    if revision is None or revision != schema.head_revision():
        upgrade_database(target.database_url)
        done.migrated_from = revision or "empty"
    done.moved_paths = _move_stored_paths(target.database_url, manifest.source_data_dir, target.data_dir)
    release()
    return done


def _refuse_if_in_use(target: Source) -> None:
    """A data dir holding files, or a SQLite database holding more than the schema and the offices, is
    refused (`--force` overwrites them)."""
    data_dir = target.data_dir.resolve()
    for path in sorted(data_dir.rglob("*")) if data_dir.is_dir() else []:
        rel = path.relative_to(data_dir)
        if path.is_file() and rel.parts[0] not in SKIPPED_FOLDERS and path.name != LOCAL_SECRETS_FILE:
            raise BackupError(
                f"HOTLINE_DATA_DIR {data_dir} is not empty ({rel.as_posix()}): restore into a fresh "
                "instance, or pass --force to overwrite it"
            )
    if target.sqlite_path is None or not target.sqlite_path.exists():
        return  # PostgreSQL's database is pg_restore's, done before (and checked by its revision)
    table = _first_table_in_use(target.database_url)
    if table is not None:
        raise BackupError(
            f"the database is not empty (table {table} has rows): restore into a fresh instance, "
            "or pass --force to overwrite it"
        )


def _first_table_in_use(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            for name in sorted(inspect(conn).get_table_names()):
                if name in REFERENCE_TABLES:
                    continue
                # Names come from the database's own catalogue, quoted by the dialect.
                quoted = conn.dialect.identifier_preparer.quote(name)
                if conn.execute(text(f"SELECT 1 FROM {quoted} LIMIT 1")).first():  # noqa: S608
                    return name
    finally:
        engine.dispose()
    return None


def _put_database(copy: Path, live: Path, manifest: Manifest) -> None:
    """Replace the SQLite file by the backup's copy, atomically; a stale WAL of the old one goes first."""
    make_private_dirs(live.parent)
    staged = live.with_name(live.name + ".restoring")
    staged.unlink(missing_ok=True)
    size, sha = copy_private(copy, staged)
    expected = manifest.files[manifest.database["file"]]
    if (size, sha) != (expected["size"], expected["sha256"]):
        staged.unlink(missing_ok=True)
        raise BackupError(f"{copy} changed while it was restored")
    for suffix in SQLITE_COMPANIONS:
        # The old database's WAL would be replayed into the restored file: it must not outlive it.
        Path(str(live) + suffix).unlink(missing_ok=True)
    os.replace(staged, live)
    with sqlite3.connect(live) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # as the app runs it
    conn.close()


def _check_postgresql(url: str, revision: str | None) -> None:
    """The database must hold the dump of this backup (pg_restore first): it is at the same revision."""
    current = schema.database_revision(url)
    if current is None:
        raise BackupError(
            "the PostgreSQL database has no schema: pg_restore the backup's dump first (README Backups)"
        )
    if revision is not None and current != revision:
        raise BackupError(
            f"the PostgreSQL database is at revision {current}, the backup's data dir at {revision}: "
            "pg_restore the dump made with this backup first (README Backups)"
        )


def _put_data(folder: Path, manifest: Manifest, data_dir: Path) -> int:
    """Each of the backup's data files into the data dir (0600, folders 0700), each replaced atomically."""
    make_private_dirs(data_dir)
    count = 0
    prefix = DATA_FOLDER + "/"
    for rel, expected in sorted(manifest.files.items()):
        if not rel.startswith(prefix):
            continue
        dest = data_dir / rel[len(prefix) :]
        if not dest.resolve().is_relative_to(data_dir):
            raise BackupError(f"backup {folder}: {rel} points outside the data dir")
        staged = dest.with_name(dest.name + ".restoring")
        staged.unlink(missing_ok=True)
        size, sha = copy_private(folder / rel, staged)
        if (size, sha) != (expected["size"], expected["sha256"]):
            staged.unlink(missing_ok=True)
            raise BackupError(f"backup {folder}: {rel} changed while it was restored")
        os.replace(staged, dest)
        count += 1
    return count


def _move_stored_paths(url: str, old_dir: str, new_dir: Path) -> int:
    """Recordings name their file by absolute path: one under the backup's data dir moves to ours."""
    old, new = old_dir.rstrip("/") + "/", str(new_dir.resolve()).rstrip("/") + "/"
    if old == new:
        return 0
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            under_old = Recording.stored_path.startswith(old, autoescape=True)
            moved = conn.execute(select(func.count()).where(under_old)).scalar_one()
            conn.execute(
                update(Recording)
                .where(under_old)
                .values(stored_path=literal(new, Text) + func.substr(Recording.stored_path, len(old) + 1))
            )
    finally:
        engine.dispose()
    return int(moved)
