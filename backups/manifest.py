"""A backup's manifest (what it holds, with sizes and sha256) and the checked, private copy of one file.

A backup is a folder, not an archive: each file is checked and named on its own when it is damaged,
rsync/restic/borg copy only what changed (recordings never change once stored), and nothing needs
twice the disk to assemble. It is built under a hidden `.NAME.partial-…` sibling and renamed into
place only once its manifest is written: a folder named PATH with a manifest is a finished backup.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.files import make_private_dirs

FORMAT = "moe-hotline-backup/1"
MANIFEST = "manifest.json"
DATABASE_FILE = "hotline.db"  # the SQLite copy, beside the manifest
DATA_FOLDER = "data"  # the data dir's files, below it by their relative paths
CHUNK = 1024 * 1024


class BackupError(Exception):
    """A backup cannot be made or restored; the message is one line naming the file or setting."""


@dataclass
class Manifest:
    """What a backup holds: every file with its size and sha256, and what it was made from."""

    created_at: str
    hotline_version: str
    schema_revision: str | None
    database: dict[str, Any]
    source_data_dir: str
    data_key_fingerprint: str | None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # relative path -> size, sha256
    # The recording keys the sealed files need: key id (hex, as infra.sealed names it) -> files sealed
    # with it. None in a backup made before it was recorded.
    recording_key_ids: dict[str, int] | None = None

    def to_json(self) -> str:
        body = {"format": FORMAT, **self.__dict__}
        return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not folder.is_dir():
            raise BackupError(f"{folder} is not a backup folder")
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackupError(f"{path} is missing: not a finished backup") from None
        except (OSError, ValueError) as exc:
            raise BackupError(f"{path} cannot be read ({type(exc).__name__})") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise BackupError(f"{path} is not a {FORMAT} manifest")
        try:
            return cls(**{k: v for k, v in body.items() if k != "format"})
        except TypeError:
            raise BackupError(f"{path} lacks or has unknown fields") from None


def sha256_of(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def copy_private(src: Path, dst: Path) -> tuple[int, str]:
    """Copy `src` to a new file `dst` (0600, folders 0700), synced; return the size and sha256 written.

    The file is read once through one descriptor: a recording replaced meanwhile (os.replace) is
    copied whole, old or new, never half of each.
    """
    make_private_dirs(dst.parent)
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") as source:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    return size, digest.hexdigest()


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify(folder: Path, manifest: Manifest) -> None:
    """Every file the manifest lists is there with its size and sha256, and there is no other file.

    The first fault is a BackupError naming the file (relative to the backup folder).
    """
    for rel, expected in sorted(manifest.files.items()):
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not parts:
            raise BackupError(f"backup {folder}: the manifest names {rel!r}, outside the backup")
        path = folder / rel
        if not path.is_file():
            raise BackupError(f"backup {folder}: {rel} is missing")
        size, sha = sha256_of(path)
        if size != expected.get("size") or sha != expected.get("sha256"):
            raise BackupError(f"backup {folder}: {rel} does not match its checksum (damaged or changed)")
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST and rel not in manifest.files:
            raise BackupError(f"backup {folder}: {rel} is not in the manifest")
