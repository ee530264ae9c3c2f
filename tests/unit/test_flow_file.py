"""Flow files: the shipped one loads, and every mistake is reported with its file, node and field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask

from telephony.flow import (
    STANDINGS,
    BranchNode,
    DigitsNode,
    FlowError,
    LookupNode,
    MenuNode,
    RecordNode,
    SubmitNode,
    TransferNode,
    load_flow,
    parse_flow,
)

FLOW_FILE = Path(__file__).resolve().parents[2] / "ivr_flows" / "hotline.yaml"
Mutation = Callable[[dict[str, Any]], object]


def shipped() -> dict[str, Any]:
    data = yaml.safe_load(FLOW_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def node(data: dict[str, Any], node_id: str) -> dict[str, Any]:
    found = [n for n in data["nodes"] if n["id"] == node_id]
    assert len(found) == 1, node_id
    return found[0]


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def broken(tmp_path: Path, mutate: Mutation) -> tuple[Path, FlowError]:
    """Load the shipped flow changed by `mutate` from a file; return the file and the error raised."""
    data = copy.deepcopy(shipped())
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(FlowError) as caught:
        load_flow(path)
    return path, caught.value


def assert_names(path: Path, err: FlowError, node_id: str | None, field: str | None, problem: str) -> None:
    assert err.path == str(path)
    assert err.node == node_id
    assert err.field == field
    assert problem in err.problem
    message = str(err)
    assert message.startswith(str(path))
    if node_id is not None:
        assert f"node {node_id!r}" in message
    if field is not None:
        assert f"field {field!r}" in message
    assert message.endswith(err.problem)


# ---- the shipped flow -----------------------------------------------------------------------------


def test_shipped_flow_loads_with_the_product_keys() -> None:
    flow = load_flow(FLOW_FILE)

    assert flow.name == "hotline"
    assert flow.path == str(FLOW_FILE)
    assert flow.default_language == "th"
    assert flow.start == "welcome"
    main = flow.nodes["main_menu"]
    assert isinstance(main, MenuNode)
    assert sorted(main.options) == ["*", "0", "1", "2", "3", "4", "5", "9"]
    assert main.options["5"].next == "ask_reference" and not main.options["5"].set
    assert {k: dict(b.set) for k, b in main.options.items() if b.set} == {
        "1": {"category": "violence"},
        "2": {"category": "accident"},
        "3": {"category": "rights_violation"},
        "4": {"category": "health_harm"},
    }
    assert main.options["9"].language == "en"
    assert main.options["*"].repeat
    assert main.tries == 3
    assert main.default.set == {"category": "unspecified"}
    callback = flow.nodes["callback_menu"]
    assert isinstance(callback, MenuNode)
    assert {k: b.set.get("callback") for k, b in callback.options.items()} == {
        "1": "caller",
        "2": "other",
        "3": "none",
        "*": None,
    }
    province = flow.nodes["ask_province"]
    assert isinstance(province, DigitsNode)
    assert (province.length, province.finish_key, province.validate) == (2, None, "province")
    assert province.skip is not None and province.skip[0] == "#"
    assert province.speech is not None and province.speech.language == "th-TH"
    number = flow.nodes["ask_callback_number"]
    assert isinstance(number, DigitsNode)
    assert (number.finish_key, number.validate, number.sensitive) == ("#", "thai_phone", True)
    assert flow.sensitive_vars == {"callback_number"}
    record = flow.nodes["record_message"]
    assert isinstance(record, RecordNode)
    assert (record.max_length, record.finish_key, record.confirm.confirm_key) == (180, "#", "1")
    transfer = flow.nodes["transfer_staff"]
    assert isinstance(transfer, TransferNode)
    assert transfer.hours.timezone == "Asia/Bangkok"
    assert sorted(transfer.hours.days) == [0, 1, 2, 3, 4]
    assert (transfer.hours.open.isoformat(), transfer.hours.close.isoformat()) == ("08:30:00", "16:30:00")
    check = flow.nodes["check_caller_id"]
    assert isinstance(check, BranchNode)
    assert check.otherwise.set == {"callback": "other"}


def test_shipped_flow_follow_up_path() -> None:
    flow = load_flow(FLOW_FILE)
    lookup = flow.nodes["ask_reference"]
    assert isinstance(lookup, LookupNode)
    assert lookup.tries == 3
    assert tuple(lookup.standing) == STANDINGS
    assert lookup.found.next == "follow_up_menu"
    # Three wrong tries lead to a new report, never to a hang-up.
    assert lookup.on_fail.next == "ask_province" and lookup.on_fail.set == {"category": "unspecified"}
    menu = flow.nodes["follow_up_menu"]
    assert isinstance(menu, MenuNode)
    assert {k: b.next for k, b in menu.options.items()} == {
        "1": "follow_up_record",
        "2": "goodbye",
        "*": None,
    }
    assert menu.default.next == "goodbye"
    record = flow.nodes["follow_up_record"]
    assert isinstance(record, RecordNode)
    assert record.next == "attach_message"
    assert record.on_fail is not None and record.on_fail.next == "goodbye"
    attach = flow.nodes["attach_message"]
    assert isinstance(attach, SubmitNode) and attach.effect == "attach_message"
    assert attach.next == "follow_up_thanks"
    submit = flow.nodes["submit"]
    assert isinstance(submit, SubmitNode) and submit.effect == "open_case"


def test_the_engine_and_the_cases_agree_on_the_standings() -> None:
    from cases.follow_up import Standing

    assert tuple(s.value for s in Standing) == STANDINGS


def test_every_shipped_prompt_has_thai_and_english() -> None:
    flow = load_flow(FLOW_FILE)
    prompts = [(n.id, name, p) for n in flow.nodes.values() for name, p in n.prompts()]
    prompts += [("rescue", "prompt", flow.rescue.prompt), ("rescue", "thanks", flow.rescue.thanks)]
    assert len(prompts) > 20
    for node_id, name, prompt in prompts:
        assert prompt.text.get("th", "").strip(), (node_id, name)
        assert prompt.text.get("en", "").strip(), (node_id, name)


# ---- errors naming file, node and field -----------------------------------------------------------


def test_unknown_node_type(tmp_path: Path) -> None:
    path, err = broken(tmp_path, lambda d: node(d, "welcome").update(type="speak"))
    assert_names(path, err, "welcome", "type", "unknown node type 'speak'")


def test_node_type_that_is_not_text(tmp_path: Path) -> None:
    path, err = broken(tmp_path, lambda d: node(d, "welcome").update(type=["say"]))
    assert_names(path, err, "welcome", "type", "is not of type 'string'")


def test_node_without_type(tmp_path: Path) -> None:
    path, err = broken(tmp_path, lambda d: node(d, "welcome").pop("type"))
    assert_names(path, err, "welcome", "type", "is a required property")


@pytest.mark.parametrize(
    ("node_id", "mutate", "field"),
    [
        ("welcome", lambda n: n.update(next="nowhere"), "next"),
        ("main_menu", lambda n: n["options"]["2"].update(next="nowhere"), "options.2.next"),
        ("main_menu", lambda n: n["default"].update(next="nowhere"), "default.next"),
        ("ask_province", lambda n: n["skip"].update(next="nowhere"), "skip.next"),
        ("ask_province", lambda n: n["on_fail"].update(next="nowhere"), "on_fail.next"),
        ("transfer_staff", lambda n: n["answered"].update(next="nowhere"), "answered.next"),
        ("check_caller_id", lambda n: n.update(then="nowhere"), "then"),
        ("check_caller_id", lambda n: n["else"].update(next="nowhere"), "else"),
        ("submit", lambda n: n.update(next="nowhere"), "next"),
        ("ask_reference", lambda n: n.update(found="nowhere"), "found.next"),
        ("ask_reference", lambda n: n["on_fail"].update(next="nowhere"), "on_fail.next"),
        ("follow_up_record", lambda n: n.update(on_fail="nowhere"), "on_fail.next"),
    ],
)
def test_dangling_next(
    tmp_path: Path, node_id: str, mutate: Callable[[dict[str, Any]], object], field: str
) -> None:
    path, err = broken(tmp_path, lambda d: mutate(node(d, node_id)))
    assert_names(path, err, node_id, field, "dangling next: no node 'nowhere'")


def test_start_naming_no_node(tmp_path: Path) -> None:
    path, err = broken(tmp_path, lambda d: d.update(start="nowhere"))
    assert_names(path, err, None, "start", "names no node: 'nowhere'")


def test_duplicate_id(tmp_path: Path) -> None:
    def duplicate(d: dict[str, Any]) -> None:
        d["nodes"].append({"id": "goodbye", "type": "hangup"})

    path, err = broken(tmp_path, duplicate)
    assert_names(path, err, "goodbye", "id", "duplicate id")


@pytest.mark.parametrize(
    ("node_id", "mutate", "field"),
    [
        ("welcome", lambda n: n["prompt"].pop("th"), "prompt"),
        ("welcome", lambda n: n["prompt"].update(th="   "), "prompt"),
        ("main_menu", lambda n: n["no_input"].pop("th"), "no_input"),
        ("main_menu", lambda n: n["default"]["prompt"].pop("th"), "default.prompt"),
        ("ask_province", lambda n: n["confirm"]["prompt"].pop("th"), "prompt"),
        ("transfer_staff", lambda n: n["closed"]["prompt"].pop("th"), "closed.prompt"),
        ("ask_reference", lambda n: n["not_found"].pop("th"), "not_found"),
        ("ask_reference", lambda n: n["standing"]["resolved"].pop("th"), "standing.resolved"),
        ("ask_reference", lambda n: n["on_fail"]["prompt"].pop("th"), "on_fail.prompt"),
    ],
)
def test_missing_thai_prompt(
    tmp_path: Path, node_id: str, mutate: Callable[[dict[str, Any]], object], field: str
) -> None:
    path, err = broken(tmp_path, lambda d: mutate(node(d, node_id)))
    assert_names(path, err, node_id, field, "has no Thai text")


def test_missing_thai_rescue_prompt(tmp_path: Path) -> None:
    path, err = broken(tmp_path, lambda d: d["rescue"]["thanks"].pop("th"))
    assert_names(path, err, "rescue", "thanks", "has no Thai text")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("หมายเลข {number}", "unknown placeholder {number}", id="unknown-name"),
        pytest.param("หมายเลข {}", "unknown placeholder {}", id="empty"),
        pytest.param("หมายเลข {0}", "unknown placeholder {0}", id="positional"),
        pytest.param("หมายเลข {value.real}", "unknown placeholder {value.real}", id="attribute"),
        pytest.param("หมายเลข {value", "not a valid template", id="unclosed"),
        pytest.param("หมายเลข }", "not a valid template", id="single-close"),
    ],
)
def test_bad_placeholder(tmp_path: Path, text: str, problem: str) -> None:
    path, err = broken(tmp_path, lambda d: node(d, "close")["prompt"].update(th=text))
    assert_names(path, err, "close", "prompt.th", problem)


def test_unknown_validator(tmp_path: Path) -> None:
    path, err = broken(tmp_path, lambda d: node(d, "ask_callback_number").update(validate="email"))
    assert_names(path, err, "ask_callback_number", "validate", "unknown validator 'email'")


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda n: n.update(length=10), id="both"),
        pytest.param(lambda n: n.pop("finish_key"), id="neither"),
    ],
)
def test_length_xor_finish_key(tmp_path: Path, mutate: Callable[[dict[str, Any]], object]) -> None:
    path, err = broken(tmp_path, lambda d: mutate(node(d, "ask_callback_number")))
    assert_names(path, err, "ask_callback_number", "length", "exactly one of length")


def test_skip_key_equal_to_finish_key(tmp_path: Path) -> None:
    def mutate(d: dict[str, Any]) -> None:
        n = node(d, "ask_province")
        n.pop("length")
        n["finish_key"] = "#"

    path, err = broken(tmp_path, mutate)
    assert_names(path, err, "ask_province", "skip.key", "must differ from finish_key")


def test_say_loop_without_waiting(tmp_path: Path) -> None:
    def mutate(d: dict[str, Any]) -> None:
        node(d, "welcome")["next"] = "again"
        d["nodes"].append({"id": "again", "type": "say", "prompt": "อีกครั้ง", "next": "welcome"})

    path, err = broken(tmp_path, mutate)
    assert_names(path, err, "welcome", "next", "loops back to itself without waiting")


def test_branch_node_that_would_repeat(tmp_path: Path) -> None:
    path, err = broken(tmp_path, lambda d: node(d, "check_caller_id")["else"].update(repeat=True))
    assert_names(path, err, "check_caller_id", "else", "a branch node cannot repeat")


def test_branch_loop_without_waiting(tmp_path: Path) -> None:
    path, err = broken(tmp_path, lambda d: node(d, "check_caller_id").update(then="check_caller_id"))
    assert_names(path, err, "check_caller_id", "next", "loops back to itself without waiting")


@pytest.mark.parametrize(
    ("node_id", "mutate", "field"),
    [
        ("welcome", lambda n: n.update(colour="blue"), "colour"),
        ("main_menu", lambda n: n.update(retries=3), "retries"),
        ("main_menu", lambda n: n["options"]["1"].update(goto="ask_province"), "options.1.goto"),
        ("welcome", lambda n: n["prompt"].update(fr="Bonjour"), "prompt.fr"),
        ("ask_province", lambda n: n["speech"].update(model="phone_call"), "speech.model"),
        ("record_message", lambda n: n["confirm"].update(cancel_key="3"), "confirm.cancel_key"),
    ],
)
def test_unknown_field(
    tmp_path: Path, node_id: str, mutate: Callable[[dict[str, Any]], object], field: str
) -> None:
    path, err = broken(tmp_path, lambda d: mutate(node(d, node_id)))
    assert_names(path, err, node_id, field, "is not a")


def test_unknown_top_level_field(tmp_path: Path) -> None:
    path, err = broken(tmp_path, lambda d: d.update(langauge="th"))
    assert_names(path, err, None, "langauge", "'langauge' was unexpected")


@pytest.mark.parametrize(
    ("hours", "field", "problem"),
    [
        ({"timezone": "Asia/Bangkonk"}, "hours.timezone", "is not an IANA time zone"),
        ({"timezone": 7}, "hours.timezone", "is not an IANA time zone"),
        ({"days": ["monday"]}, "hours.days", "must be a list of"),
        ({"days": []}, "hours.days", "must be a list of"),
        ({"open": "8.30"}, "hours.open", "must be HH:MM"),
        ({"close": "25:00"}, "hours.close", "must be HH:MM"),
        ({"open": "17:00"}, "hours.close", "must be after open"),
    ],
)
def test_bad_office_hours(tmp_path: Path, hours: dict[str, Any], field: str, problem: str) -> None:
    path, err = broken(tmp_path, lambda d: node(d, "transfer_staff")["hours"].update(hours))
    assert_names(path, err, "transfer_staff", field, problem)


def test_office_hours_not_a_mapping(tmp_path: Path) -> None:
    path, err = broken(tmp_path, lambda d: node(d, "transfer_staff").update(hours="8:30-16:30"))
    assert_names(path, err, "transfer_staff", "hours", "must be a mapping")


@pytest.mark.parametrize(
    ("node_id", "mutate", "field", "problem"),
    [
        ("main_menu", lambda n: n.update(tries=0), "tries", "from 1 to 10"),
        ("main_menu", lambda n: n["options"].update({"12": "welcome"}), "options.12", "is not one phone key"),
        (
            "main_menu",
            lambda n: n["options"]["1"]["set"].update(reference="1"),
            "options.1.set.reference",
            "",
        ),
        ("main_menu", lambda n: n["options"]["9"].update(language="fr"), "options.9.language", "one of"),
        ("record_message", lambda n: n["confirm"].update(retry_key="1"), "confirm.retry_key", "must differ"),
        ("record_message", lambda n: n.update(finish_key="##"), "finish_key", "one phone key"),
        ("ask_province", lambda n: n.update(speech="yes"), "speech", "must be true, false or a mapping"),
        (
            "ask_callback_number",
            lambda n: n.update(speech=True),
            "speech",
            "only understood for the province",
        ),
        ("check_caller_id", lambda n: n.update({"if": "is_vip"}), "if", "unknown condition"),
        ("welcome", lambda n: n["prompt"].update(audio={"th": "../secret.wav"}), "prompt.audio.th", ""),
        ("welcome", lambda n: n["prompt"].update(audio={"th": "welcome.wav"}), "prompt.audio.th", "no file"),
        (
            "attach_message",
            lambda n: n.update(effect="delete_case"),
            "effect",
            "unknown effect 'delete_case'",
        ),
        ("ask_reference", lambda n: n.pop("standing"), "standing", "is required"),
        ("ask_reference", lambda n: n.update(standing="received"), "standing", "must map each of"),
        (
            "ask_reference",
            lambda n: n["standing"].pop("being_worked"),
            "standing.being_worked",
            "is required",
        ),
        (
            "ask_reference",
            lambda n: n["standing"].update(office="สำนักงาน"),
            "standing.office",
            "is not a standing a caller may hear",
        ),
        (
            "ask_reference",
            lambda n: n["standing"]["received"].update(th="เรื่อง {category}"),
            "standing.received.th",
            "unknown placeholder {category}",
        ),
        ("ask_reference", lambda n: n.pop("found"), "found", "is required"),
        ("ask_reference", lambda n: n.pop("on_fail"), "on_fail", "is required"),
        ("ask_reference", lambda n: n["on_fail"].update(next=None, repeat=True), "on_fail", "cannot repeat"),
        ("ask_reference", lambda n: n.update(tries=11), "tries", "from 1 to 10"),
        ("ask_reference", lambda n: n.update(length=8), "length", "is not a field of this node type"),
        ("follow_up_record", lambda n: n.update(on_fail={"repeat": True}), "on_fail", "cannot repeat"),
    ],
)
def test_other_node_mistakes(
    tmp_path: Path, node_id: str, mutate: Callable[[dict[str, Any]], object], field: str, problem: str
) -> None:
    path, err = broken(tmp_path, lambda d: mutate(node(d, node_id)))
    assert_names(path, err, node_id, field, problem)


@pytest.mark.parametrize("key", ["start", "rescue", "nodes", "flow"])
def test_missing_top_level_key(tmp_path: Path, key: str) -> None:
    path, err = broken(tmp_path, lambda d: d.pop(key))
    assert_names(path, err, None, key, f"'{key}' is a required property")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("flow: hotline\nnodes:\n  - id: welcome\n    type: [say\n", encoding="utf-8")
    with pytest.raises(FlowError) as caught:
        load_flow(path)
    assert_names(path, caught.value, None, None, "is not valid YAML")
    assert "line 4" in str(caught.value)


def test_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, ["welcome"])
    with pytest.raises(FlowError) as caught:
        load_flow(path)
    assert_names(path, caught.value, None, None, "must hold a mapping")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(FlowError) as caught:
        load_flow(path)
    assert_names(path, caught.value, None, None, "cannot be read")


def test_parse_flow_names_the_given_path() -> None:
    data = shipped()
    node(data, "welcome")["type"] = "speak"
    with pytest.raises(FlowError, match=r"^custom\.yaml: node 'welcome', field 'type': unknown node type"):
        parse_flow(data, "custom.yaml")


# ---- flask --app app flows check ------------------------------------------------------------------


def test_flows_check_passes_for_the_shipped_file(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["flows", "check"])
    assert result.exit_code == 0, result.output
    assert f"ok: {FLOW_FILE}" in result.output
    assert "flow 'hotline'" in result.output


def test_flows_check_fails_naming_file_node_and_field(app: Flask, tmp_path: Path) -> None:
    data = shipped()
    node(data, "main_menu")["options"]["2"]["next"] = "ask_provnce"
    path = write(tmp_path, data)

    result = app.test_cli_runner().invoke(args=["flows", "check", str(FLOW_FILE), str(path)])

    assert result.exit_code == 1
    assert f"ok: {FLOW_FILE}" in result.stdout
    assert result.stderr.strip() == (
        f"error: {path}: node 'main_menu', field 'options.2.next': dangling next: no node 'ask_provnce'"
    )
