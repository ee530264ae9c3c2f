"""The Thai catalogue holds every message `pybabel extract` finds (babel.cfg), translated; the .mo match."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from console.i18n import TRANSLATIONS_DIR

ROOT = Path(__file__).resolve().parents[2]


def methods() -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    """The extraction rules of babel.cfg itself: the test finds what `pybabel extract` finds."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as fh:
        return parse_mapping_cfg(fh)


def catalogue(locale: str) -> dict[str, str]:
    """msgid -> msgstr; a fuzzy entry counts as untranslated (gettext does not use it)."""
    with (TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return {str(m.id): "" if m.fuzzy else str(m.string) for m in read_po(fh) if m.id}


def compiled(locale: str) -> dict[str, str]:
    with (TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.mo").open("rb") as fh:
        return {str(m.id): str(m.string) for m in read_mo(fh) if m.id and m.string}


def used_messages() -> set[str]:
    found = set()
    method_map, options_map = methods()
    for _file, _line, message, _comments, _context in extract_from_dir(str(ROOT), method_map, options_map):
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


def _unmarked_refusals() -> list[str]:
    """Refusals raised in cases/ whose message is a bare string: extraction would not see them."""
    found = []
    for path in sorted((ROOT / "cases").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Raise) or not isinstance(node.exc, ast.Call) or not node.exc.args:
                continue
            name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
            first = node.exc.args[0]
            if name in {"NotPermitted", "InvalidInput", "WorkflowError", "AccountError"} and isinstance(
                first, ast.Constant | ast.JoinedStr
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_refusal_in_cases_is_marked_where_it_is_raised() -> None:
    assert _unmarked_refusals() == [], "wrap the message in N_() (cases.texts)"


def test_extraction_finds_the_domain_refusals() -> None:
    found = used_messages()
    assert "Only staff with the role “%(role)s” at that office can %(doing)s." in found
    assert "This callback is closed: there is nobody left to call back." in found
    assert "route cases from the phone line" in found
