"""The import-linter contracts in pyproject.toml fail on a broken layer, naming the import chain."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# Every package the contracts name (a new one would otherwise be missing from the copy).
PACKAGES = tuple(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
)


def lint_copy(tmp_path: Path, edits: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run lint-imports with the project's config over a copy of the packages, `edits` appended to files."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for name, line in edits.items():
        with (tmp_path / name).open("a", encoding="utf-8") as fh:
            fh.write(f"\n{line}\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_packages_as_they_are_keep_every_contract(tmp_path: Path) -> None:
    done = lint_copy(tmp_path, {})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("edits", "contract", "chain"),
    [
        (
            {"cases/follow_up.py": "import flask"},
            "cases is not allowed to import flask",
            "cases.follow_up -> flask",
        ),
        (
            {"transcription/audio.py": "import werkzeug.security"},
            "transcription is not allowed to import werkzeug",
            "transcription.audio -> werkzeug",
        ),
        (
            {"cases/follow_up.py": "from telephony import twiml"},
            "cases is not allowed to import telephony",
            "cases.follow_up -> telephony.twiml",
        ),
        (
            {"infra/clock.py": "import transcription.models"},
            "infra is not allowed to import transcription",
            "infra.clock -> transcription.models",
        ),
        (
            {"transcription/audio.py": "import app"},
            "transcription is not allowed to import app",
            "transcription.audio -> app",
        ),
    ],
    ids=["cases-flask", "transcription-werkzeug", "cases-up-to-telephony", "infra-up", "imports-app"],
)
def test_a_broken_contract_fails_naming_the_import_chain(
    tmp_path: Path, edits: dict[str, str], contract: str, chain: str
) -> None:
    done = lint_copy(tmp_path, edits)
    assert done.returncode != 0
    assert contract in done.stdout and chain in done.stdout, done.stdout + done.stderr


def test_an_indirect_chain_is_named_link_by_link(tmp_path: Path) -> None:
    # infra.clock is imported all over cases/: a web framework reached through it is caught there too.
    done = lint_copy(tmp_path, {"infra/clock.py": "import flask_login"})
    assert done.returncode != 0
    assert "cases is not allowed to import flask_login" in done.stdout
    assert "infra.clock -> flask_login" in done.stdout
