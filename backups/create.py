"""`backup create`: SQLite's online backup of the database, the data dir as it is, a manifest; atomic."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import make_url

from backups import schema
from backups.keys import sealed_key_id
from backups.manifest import (
    DATA_FOLDER,
    DATABASE_FILE,
    MANIFEST,
    BackupError,
    Manifest,
    copy_private,
    fsync_dir,
    sha256_of,
    write_private,
)
from infra.config import LOCAL_SECRETS_FILE
from infra.crypto import FieldCipher
from infra.files import SQLITE_COMPANIONS, disk_fault, make_private_dirs, private_sqlite_file
from infra.sealed import RecordingCipher

# Under the data dir but never in a backup: the joined Whisper model is rebuilt from its wheels by the
# worker (145 MB of no one's data); a `.part` file is a download still being written.
SKIPPED_FOLDERS = ("models",)
SKIPPED_SUFFIXES = (".part",)
SQLITE_BUSY_MS = 30_000


@dataclass(frozen=True)
class Source:
    """An instance: the database URL, the data dir and the data key (only its fingerprint is written);
    a restore checks that its ciphers open the backup's numbers and recordings (None: not checked)."""

    database_url: str
    data_dir: Path
    data_key: str
    cipher: FieldCipher | None = field(default=None, repr=False)
    sealer: RecordingCipher | None = field(default=None, repr=False)

    @property
    def sqlite_path(self) -> Path | None:
        if not self.database_url.startswith("sqlite"):
            return None
        return Path(str(make_url(self.database_url).database)).resolve()


def create_backup(source: Source, target: Path) -> Manifest:
    """Write a backup folder at `target` (which must not exist); return its manifest.

    Built in a hidden sibling and renamed into place once complete: a crash leaves a `.partial-`
    folder, never a `target` that looks finished.
    """
    target = target.resolve()
    if target.exists():
        raise BackupError(f"{target} exists: a backup is written to a new path")
    if target.is_relative_to(source.data_dir.resolve()):
        raise BackupError(f"{target} is inside HOTLINE_DATA_DIR ({source.data_dir}): choose another place")
    make_private_dirs(target.parent)
    partial = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
    partial.mkdir(mode=0o700)
    try:
        manifest = _fill(source, partial)
        write_private(partial / MANIFEST, manifest.to_json())
        fsync_dir(partial)
        os.rename(partial, target)
        fsync_dir(target.parent)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError):
            raise BackupError(disk_fault("cannot write the backup", target, exc)) from exc
        raise
    return manifest


def _fill(source: Source, folder: Path) -> Manifest:
    fingerprints = schema.key_fingerprints(source.data_key)
    manifest = Manifest(
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        hotline_version=schema.hotline_version(),
        schema_revision=None,
        database={},
        source_data_dir=str(source.data_dir.resolve()),
        data_key_fingerprint=fingerprints[0] if fingerprints else None,
    )
    sqlite_path = source.sqlite_path
    # The database first, then the files: a recording is on disk before its row says "stored", so every
    # file the copied database names is already there when the data dir is walked.
    if sqlite_path is not None:
        manifest.schema_revision = _sqlite_snapshot(sqlite_path, folder / DATABASE_FILE)
        manifest.database = {"kind": "sqlite", "file": DATABASE_FILE}
        manifest.files[DATABASE_FILE] = _entry(folder / DATABASE_FILE)
    else:
        manifest.schema_revision = schema.database_revision(source.database_url)
        manifest.database = {"kind": "postgresql", "included": False, "how": "pg_dump -Fc (README Backups)"}
    skip = _never_copied(source)
    key_ids: dict[str, int] = {}
    manifest.recording_key_ids = key_ids
    for src, rel in _data_files(source.data_dir.resolve(), skip):
        try:
            size, sha = copy_private(src, folder / DATA_FOLDER / rel)
        except FileNotFoundError:
            continue  # removed while we walked (retention, erasure): it is gone, as in the database
        manifest.files[f"{DATA_FOLDER}/{rel}"] = {"size": size, "sha256": sha}
        kid = sealed_key_id(folder / DATA_FOLDER / rel)  # the copy: what the backup holds
        if kid is not None:
            key_ids[kid] = key_ids.get(kid, 0) + 1
    return manifest


def _entry(path: Path) -> dict[str, object]:
    size, sha = sha256_of(path)
    return {"size": size, "sha256": sha}


def _sqlite_snapshot(path: Path, dest: Path) -> str | None:
    """Copy the live database with SQLite's online backup API; return its schema revision.

    pages=-1 copies every page in one step, inside one read transaction: in WAL mode that is one
    consistent snapshot, and the web app and worker go on writing meanwhile (readers never block the
    writer). The copy is then made a single self-contained file (rollback journal, not WAL) and checked.
    """
    if not path.is_file():
        raise BackupError(f"the SQLite database {path} does not exist")
    private_sqlite_file(str(dest), create=True)
    src = sqlite3.connect(path, timeout=SQLITE_BUSY_MS / 1000)  # it exists: nothing is created
    out = sqlite3.connect(dest)
    try:
        src.backup(out, pages=-1)
        out.execute("PRAGMA journal_mode=DELETE")
        check = out.execute("PRAGMA integrity_check").fetchone()
        if not check or check[0] != "ok":
            raise BackupError(f"the copy of {path} fails SQLite's integrity check: {check}")
        has_version = out.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone()
        row = out.execute("SELECT version_num FROM alembic_version").fetchone() if has_version else None
    finally:
        out.close()
        src.close()
    return str(row[0]) if row else None


def _never_copied(source: Source) -> set[Path]:
    """Files that may lie under the data dir yet never go in a backup: the keys, the live database."""
    skip = {source.data_dir.resolve() / LOCAL_SECRETS_FILE}
    if source.sqlite_path is not None:
        db = source.sqlite_path
        skip |= {db, *(Path(str(db) + suffix) for suffix in SQLITE_COMPANIONS)}
    return skip


def _data_files(data_dir: Path, skip: set[Path]) -> Iterator[tuple[Path, str]]:
    """The data dir's regular files (no symlinks followed), with their paths relative to it."""
    if not data_dir.is_dir():
        return
    for root, dirs, files in os.walk(data_dir):
        here = Path(root)
        if here == data_dir:
            dirs[:] = [d for d in dirs if d not in SKIPPED_FOLDERS]
        dirs.sort()
        for name in sorted(files):
            path = here / name
            if path in skip or name.endswith(SKIPPED_SUFFIXES) or name == LOCAL_SECRETS_FILE:
                continue
            if path.is_symlink() or not path.is_file():
                continue
            yield path, path.relative_to(data_dir).as_posix()
