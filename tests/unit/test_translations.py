"""The Thai catalogue is complete, the committed .mo files match the .po files, and every rule speaks Thai."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from console.i18n import TRANSLATIONS_DIR, WORKFLOW_MESSAGES

ROOT = Path(__file__).resolve().parents[2]
METHODS = [("console/templates/**.html", "jinja2"), ("cases/**.py", "python"), ("console/**.py", "python")]


def catalogue(locale: str) -> dict[str, str]:
    with (TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return {str(m.id): str(m.string) for m in read_po(fh) if m.id}


def compiled(locale: str) -> dict[str, str]:
    with (TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.mo").open("rb") as fh:
        return {str(m.id): str(m.string) for m in read_mo(fh) if m.id and m.string}


def used_messages() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(ROOT), METHODS, {}):
        if isinstance(message, str):
            found.add(message)
    return found


def test_every_message_in_the_code_is_in_the_thai_catalogue() -> None:
    missing = sorted(used_messages() - set(catalogue("th")))
    assert not missing, "run pybabel extract/update and translate:\n" + "\n".join(missing)


def test_every_thai_entry_is_translated_and_none_is_stale() -> None:
    th = catalogue("th")
    assert not [k for k, v in th.items() if not v.strip()]
    assert not sorted(set(th) - used_messages()), "entries no code uses any more"


@pytest.mark.parametrize("locale", ["th", "en"])
def test_the_committed_mo_files_match_the_po_files(locale: str) -> None:
    # `pybabel compile -d console/translations` after every change of a .po file.
    assert compiled(locale) == {k: v for k, v in catalogue(locale).items() if v}


def test_placeholders_survive_translation() -> None:
    import re

    def names(text: str) -> list[str]:
        return sorted(re.findall(r"%\((\w+)\)[sd]", text))

    th = catalogue("th")
    assert [k for k, v in th.items() if names(k) != names(v)] == []


def _workflow_messages() -> set[str]:
    """Every fixed message cases/workflow.py raises, including those _require() builds."""
    tree = ast.parse((ROOT / "cases" / "workflow.py").read_text(encoding="utf-8"))
    messages: set[str] = set()
    require = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "_require":
            require = node
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        raising = name in {"NotPermitted", "InvalidInput", "__init__"}
        if raising and isinstance(first, ast.Constant) and isinstance(first.value, str):
            messages.add(first.value)
        if name == "_require" and len(node.args) == 5:
            role, doing = node.args[3], node.args[4]
            if isinstance(role, ast.Attribute) and isinstance(doing, ast.Constant):
                messages.add(f"Only a {role.attr.lower()} of the case's office can {doing.value}.")
    assert require is not None, "workflow._require is gone: update this test"
    return messages


def test_every_workflow_message_has_a_thai_translation() -> None:
    messages = _workflow_messages()
    assert len(messages) > 20
    th = catalogue("th")
    missing = sorted(m for m in messages if m not in WORKFLOW_MESSAGES or not th.get(m))
    assert not missing, "add to console/i18n.py WORKFLOW_MESSAGES and translate:\n" + "\n".join(missing)
