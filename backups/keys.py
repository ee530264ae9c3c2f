"""The keys a backup needs (its sealed files' key ids, its data key's fingerprint) and the check, made
before a restore writes anything, that this instance's keys open its recordings and numbers."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from backups import schema
from backups.manifest import DATA_FOLDER, BackupError, Manifest
from cases.keys import unreadable_numbers
from infra.crypto import FieldCipher
from infra.sealed import HEADER, RecordingCipher, SealBroken, read_header


def sealed_key_id(path: Path) -> str | None:
    """The id (hex) of the key that sealed the file at `path`; None for a file that is not sealed."""
    with path.open("rb") as fh:
        try:
            header = read_header(fh.read(HEADER.size))
        except SealBroken:
            return None  # damaged: the checksums and the player say so, it names no key
    return None if header is None else header.key_id.hex()


def recording_key_ids(folder: Path, manifest: Manifest) -> Counter[str]:
    """How many of the backup's data files each recording key sealed (read from the files themselves:
    a manifest of an older version does not list them)."""
    found: Counter[str] = Counter()
    for rel in manifest.files:
        if rel.startswith(DATA_FOLDER + "/"):
            kid = sealed_key_id(folder / rel)
            if kid is not None:
                found[kid] += 1
    return found


def check_keys(
    folder: Path,
    manifest: Manifest,
    data_key: str,
    cipher: FieldCipher | None,
    sealer: RecordingCipher | None,
    database_url: str,
) -> list[str]:
    """Refuse (BackupError naming the key) a backup whose recordings or numbers this instance's keys cannot
    open: restored, it would not start (cases.keys.check_keys). Returns the warnings that remain."""
    if sealer is not None:
        missing = {
            kid: n
            for kid, n in recording_key_ids(folder, manifest).items()
            if not sealer.knows(bytes.fromhex(kid))
        }
        if missing:
            needed = ", ".join(f"{kid} ({n} files)" for kid, n in sorted(missing.items()))
            held = ", ".join(sealer.key_ids)
            raise BackupError(
                f"backup {folder}: its recordings are sealed with the HOTLINE_RECORDING_KEY key id {needed}, "
                f"which this instance's HOTLINE_RECORDING_KEY (ids {held}) does not hold: "
                "add that key after the current one, then restore (README Backups)"
            )
    wanted = manifest.data_key_fingerprint
    if cipher is not None:
        where = _unreadable_numbers(folder, manifest, cipher, database_url)
        if where is not None:
            made_under = f" (fingerprint {wanted})" if wanted else ""
            raise BackupError(
                f"backup {folder}: HOTLINE_DATA_KEY here cannot decrypt its numbers in {where}; it was made "
                f"under another HOTLINE_DATA_KEY{made_under}: add that key after the current one, then "
                "restore (README Backups)"
            )
    if wanted and wanted not in schema.key_fingerprints(data_key):
        return [
            f"the backup was made under another HOTLINE_DATA_KEY (fingerprint {wanted}): reporters' "
            "numbers stay unreadable until that key is configured (README Backups)"
        ]
    return []


def _unreadable_numbers(
    folder: Path, manifest: Manifest, cipher: FieldCipher, database_url: str
) -> str | None:
    """Where the backup's numbers fail to open: its SQLite copy (read-only, so its checksum stays), or for
    PostgreSQL the database pg_restore has already put back."""
    if manifest.database.get("kind") == "sqlite":
        copy = folder / manifest.database["file"]
        engine = create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(f"{copy.as_uri()}?mode=ro", uri=True)
        )
    else:
        engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            return unreadable_numbers(session, cipher, tolerant=True)
    finally:
        engine.dispose()
