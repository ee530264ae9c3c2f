"""`flows check` speaks every prompt with sample values, and names a file it cannot read in one line."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from telephony.flow import FlowError, FlowUnreadable, load_flow
from tests.unit.test_flow_file import FLOW_FILE, node, shipped, write

Change = Callable[[dict[str, Any]], None]


def flows_check(app: Flask, *paths: Path) -> Any:
    return app.test_cli_runner().invoke(args=["flows", "check", *map(str, paths)])


def set_close_th(text: str) -> Change:
    return lambda data: node(data, "close")["prompt"].update(th=text)


def set_standing_en(text: str) -> Change:
    return lambda data: node(data, "ask_reference")["standing"]["received"].update(en=text)


def set_on_fail_en(text: str) -> Change:
    return lambda data: node(data, "ask_reference")["on_fail"]["prompt"].update(en=text)


def set_thanks_th(text: str) -> Change:
    return lambda data: data["rescue"]["thanks"].update(th=text)


@pytest.mark.parametrize(
    ("change", "where", "problem"),
    [
        (
            set_close_th("หมายเลข {reference:d}"),
            "node 'close', field 'prompt.th'",
            "Unknown format code 'd' for object of type 'str'",
        ),
        (
            set_standing_en("Report {followup_reference:,}: received."),
            "node 'ask_reference', field 'standing.received.en'",
            "Cannot specify ',' with 's'.",
        ),
        (
            set_on_fail_en("Sorry {value!z}"),
            "node 'ask_reference', field 'on_fail.prompt.en'",
            "Unknown conversion specifier z",
        ),
        (
            set_thanks_th("ขอบคุณ {province:%Y}"),
            "node 'rescue', field 'thanks.th'",
            "Invalid format specifier",
        ),
    ],
)
def test_a_prompt_that_cannot_be_spoken_fails_naming_file_step_and_prompt(
    app: Flask, tmp_path: Path, change: Change, where: str, problem: str
) -> None:
    data = copy.deepcopy(shipped())
    change(data)
    path = write(tmp_path, data)

    result = flows_check(app, FLOW_FILE, path)

    assert result.exit_code == 1
    assert f"ok: {FLOW_FILE}" in result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {path}: {where}: cannot be spoken: ")
    assert problem in line
    # The app refuses the same flow when it starts, rather than sending every caller to the rescue.
    with pytest.raises(FlowError, match="cannot be spoken"):
        load_flow(path)


def test_format_specs_text_can_take_still_pass(app: Flask, tmp_path: Path) -> None:
    data = copy.deepcopy(shipped())
    set_close_th("หมายเลข {reference:>10} {reference!s}")(data)
    result = flows_check(app, write(tmp_path, data))
    assert result.exit_code == 0, result.output


def test_a_flow_file_that_is_not_utf8_is_one_line_and_exit_2(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "tis620.yaml"
    # Thai in TIS-620 (the old Thai code page), as an editor set to it would save the file.
    path.write_bytes(FLOW_FILE.read_text(encoding="utf-8").encode("tis-620", errors="replace"))
    other = tmp_path / "wrong.yaml"
    data = copy.deepcopy(shipped())
    set_close_th("{reference:d}")(data)
    write(other.parent, data).rename(other)

    result = flows_check(app, FLOW_FILE, other, path)

    assert result.exit_code == 2  # a file that cannot be read at all outranks a wrong flow (1)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in result.output
    assert lines[1].startswith(f"error: {path}: is not UTF-8 text (byte 0x")
    with pytest.raises(FlowUnreadable):
        load_flow(path)


def test_a_missing_flow_file_is_exit_2(app: Flask, tmp_path: Path) -> None:
    result = flows_check(app, tmp_path / "nowhere.yaml")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: {tmp_path / 'nowhere.yaml'}: cannot be read: No such file or directory"
    )
