"""Private folders for personal data: recordings, the spool, the instance dir with its secrets."""

from __future__ import annotations

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
