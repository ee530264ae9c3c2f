"""Private folders for personal data: recordings, the spool, the instance dir with its secrets."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def make_private_dirs(folder: Path) -> Path:
    """Create `folder` and its missing parents 0700 (mkdir(parents=True) would make the parents 0755)."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for level in reversed(missing):
        level.mkdir(mode=0o700, exist_ok=True)
    return folder


def tighten(folder: Path) -> None:
    """Make an existing folder of ours private (an older run may have created it 0755)."""
    if folder.is_dir() and folder.stat().st_mode & 0o077:
        os.chmod(folder, 0o700)


# SQLite's companions of a database file, and our writers' lock file beside it (infra.db).
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal", "-write.lock")


def private_sqlite_file(path: str, *, create: bool) -> None:
    """Make a SQLite file 0600 before SQLite opens it, and its companions of an older run private.

    SQLite creates a new database 0644 (less the umask), but gives its -wal, -shm and -journal files the
    database file's own mode (even past the umask): a database made 0600 here keeps them 0600 too. Faults
    are left for SQLite to report when it opens the file.
    """
    if create:
        # It may exist (another process made it first), or SQLite will say why it cannot be opened.
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path, *(path + suffix for suffix in SQLITE_COMPANIONS)):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except OSError:
            pass  # missing (the usual case for the companions), or not ours to change


def disk_fault(verb: str, folder: Path, exc: OSError | str, *, limit: int = 200) -> str:
    """A short reason for an error of our own disk, safe to store and print: `cannot write /x (…)`.

    It names the folder and the system's words for the error (os.strerror: "permission denied", "no
    space left on device") or the words given, never a file name or anything read from the file. A
    path too long for `limit` loses its start, so the folder's own name and the error stay readable.
    """
    if isinstance(exc, str):
        what = exc
    else:
        what = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
    shown = str(folder)
    room = limit - len(verb) - len(what) - 4
    if len(shown) > room:
        shown = "…" + shown[-max(room - 1, 1) :]
    return f"{verb} {shown} ({what})"[:limit]
