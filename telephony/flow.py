"""IVR flows as typed data: loading a YAML flow file and checking it before any call is taken."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
import yaml

LANGUAGES = ("th", "en")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Placeholders a prompt may use; the engine knows how to speak each in each language.
PLACEHOLDERS = frozenset({"value", "reference", "province", "followup_reference"})
CONDITIONS = frozenset({"caller_id_present"})
VALIDATORS = frozenset({"province", "thai_phone", "reference"})
# Where a lookup node keeps the reference of the case a caller follows up (the service reads it there).
FOLLOWUP_VAR = "followup_reference"
# What a follow-up caller may learn about a case: one of these, in plain words, and nothing more.
STANDINGS = ("received", "being_worked", "resolved")
SubmitEffect = Literal["open_case", "attach_message"]
SUBMIT_EFFECTS: Mapping[str, SubmitEffect] = {"open_case": "open_case", "attach_message": "attach_message"}
# Variables the engine stores with a call; `set:` may only write the ones a flow author controls.
SETTABLE_VARS = frozenset({"category", "callback"})


# What each placeholder stands for when a prompt is checked: text, as the engine speaks it (digits one by
# one, the province's name). A prompt that cannot be spoken with these cannot be spoken on a call either.
_SAMPLE_VALUES = {
    "th": {"value": "ศูนย์ แปด หนึ่ง", "reference": "หนึ่ง สอง สาม", "province": "เชียงใหม่"},
    "en": {"value": "zero eight one", "reference": "one two three", "province": "Chiang Mai"},
}


class FlowError(ValueError):
    """A flow file is wrong; the message names the file, node and field."""

    def __init__(self, path: Path | str, node: str | None, field_name: str | None, problem: str) -> None:
        where = str(path)
        if node:
            where += f": node {node!r}"
        if field_name:
            where += f", field {field_name!r}"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.node = node
        self.field = field_name
        self.problem = problem


@dataclass(frozen=True)
class Prompt:
    """What the caller hears: text per language, optionally a recorded audio file per language."""

    text: Mapping[str, str]
    audio: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Branch:
    """Where a key (or a default) leads, and what it sets on the way."""

    next: str | None
    set: Mapping[str, str] = field(default_factory=dict)
    language: str | None = None
    repeat: bool = False
    prompt: Prompt | None = None


@dataclass(frozen=True)
class Node:
    id: str
    type: ClassVar[str]

    def targets(self) -> list[tuple[str, str]]:
        """The (field, node id) pairs this node can move to."""
        return []

    def prompts(self) -> list[tuple[str, Prompt]]:
        return []


@dataclass(frozen=True)
class SayNode(Node):
    type: ClassVar[str] = "say"
    prompt: Prompt
    next: str

    def targets(self) -> list[tuple[str, str]]:
        return [("next", self.next)]

    def prompts(self) -> list[tuple[str, Prompt]]:
        return [("prompt", self.prompt)]


def _branch_targets(name: str, branch: Branch | None) -> list[tuple[str, str]]:
    return [(name, branch.next)] if branch is not None and branch.next is not None else []


def _branch_prompts(name: str, branch: Branch | None) -> list[tuple[str, Prompt]]:
    return [(name, branch.prompt)] if branch is not None and branch.prompt is not None else []


@dataclass(frozen=True)
class MenuNode(Node):
    type: ClassVar[str] = "menu"
    prompt: Prompt
    options: Mapping[str, Branch]
    default: Branch
    tries: int = 3
    timeout: int = 6
    no_input: Prompt | None = None
    invalid: Prompt | None = None

    def targets(self) -> list[tuple[str, str]]:
        out = [t for key, b in self.options.items() for t in _branch_targets(f"options.{key}.next", b)]
        return out + _branch_targets("default.next", self.default)

    def prompts(self) -> list[tuple[str, Prompt]]:
        out = [("prompt", self.prompt)]
        out += [(n, p) for n, p in (("no_input", self.no_input), ("invalid", self.invalid)) if p]
        for key, b in self.options.items():
            out += _branch_prompts(f"options.{key}.prompt", b)
        return out + _branch_prompts("default.prompt", self.default)


@dataclass(frozen=True)
class Confirm:
    """Read back what was entered, then 1 to confirm, 2 to enter again."""

    prompt: Prompt
    confirm_key: str = "1"
    retry_key: str = "2"


@dataclass(frozen=True)
class SpeechInput:
    language: str = "th-TH"
    hints: str = "provinces"


@dataclass(frozen=True)
class DigitsNode(Node):
    type: ClassVar[str] = "digits"
    prompt: Prompt
    store: str
    validate: str
    next: str
    on_fail: Branch
    length: int | None = None
    finish_key: str | None = None
    skip: tuple[str, Branch] | None = None
    confirm: Confirm | None = None
    speech: SpeechInput | None = None
    tries: int = 3
    timeout: int = 8
    no_input: Prompt | None = None
    invalid: Prompt | None = None
    sensitive: bool = False

    def targets(self) -> list[tuple[str, str]]:
        out = [("next", self.next), *_branch_targets("on_fail.next", self.on_fail)]
        return out + (_branch_targets("skip.next", self.skip[1]) if self.skip else [])

    def prompts(self) -> list[tuple[str, Prompt]]:
        out = [("prompt", self.prompt)]
        out += [(n, p) for n, p in (("no_input", self.no_input), ("invalid", self.invalid)) if p]
        if self.confirm:
            out.append(("confirm.prompt", self.confirm.prompt))
        out += _branch_prompts("on_fail.prompt", self.on_fail)
        return out + (_branch_prompts("skip.prompt", self.skip[1]) if self.skip else [])


@dataclass(frozen=True)
class RecordNode(Node):
    type: ClassVar[str] = "record"
    prompt: Prompt
    next: str
    confirm: Confirm
    max_length: int = 180
    finish_key: str = "#"
    silence_timeout: int = 10
    tries: int = 3
    max_rerecords: int = 3
    no_input: Prompt | None = None
    invalid: Prompt | None = None
    # Where to go when nothing was recorded after `tries`; without it the call goes on to `next`.
    on_fail: Branch | None = None

    def targets(self) -> list[tuple[str, str]]:
        return [("next", self.next), *_branch_targets("on_fail.next", self.on_fail)]

    def prompts(self) -> list[tuple[str, Prompt]]:
        out = [("prompt", self.prompt), ("confirm.prompt", self.confirm.prompt)]
        out += [(n, p) for n, p in (("no_input", self.no_input), ("invalid", self.invalid)) if p]
        return out + _branch_prompts("on_fail.prompt", self.on_fail)


@dataclass(frozen=True)
class OfficeHours:
    timezone: str
    days: frozenset[int]  # 0 = Monday
    open: time
    close: time

    def is_open(self, moment_utc: Any) -> bool:
        local = moment_utc.astimezone(ZoneInfo(self.timezone))
        return local.weekday() in self.days and self.open <= local.time() < self.close


@dataclass(frozen=True)
class TransferNode(Node):
    type: ClassVar[str] = "transfer"
    prompt: Prompt
    hours: OfficeHours
    closed: Branch
    answered: Branch
    unanswered: Branch
    dial_timeout: int = 25

    def targets(self) -> list[tuple[str, str]]:
        return (
            _branch_targets("closed.next", self.closed)
            + _branch_targets("answered.next", self.answered)
            + _branch_targets("unanswered.next", self.unanswered)
        )

    def prompts(self) -> list[tuple[str, Prompt]]:
        out = [("prompt", self.prompt)]
        for name, b in (
            ("closed", self.closed),
            ("answered", self.answered),
            ("unanswered", self.unanswered),
        ):
            out += _branch_prompts(f"{name}.prompt", b)
        return out


@dataclass(frozen=True)
class BranchNode(Node):
    type: ClassVar[str] = "branch"
    condition: str
    then: Branch
    otherwise: Branch

    def targets(self) -> list[tuple[str, str]]:
        return _branch_targets("then", self.then) + _branch_targets("else", self.otherwise)

    def prompts(self) -> list[tuple[str, Prompt]]:
        return _branch_prompts("then.prompt", self.then) + _branch_prompts("else.prompt", self.otherwise)


@dataclass(frozen=True)
class SubmitNode(Node):
    """Hand what the call collected to the case service; the engine resumes at `next`.

    `open_case` opens the draft case of a report; `attach_message` adds the recorded message to the case
    a follow-up caller looked up.
    """

    type: ClassVar[str] = "submit"
    next: str
    effect: SubmitEffect = "open_case"

    def targets(self) -> list[tuple[str, str]]:
        return [("next", self.next)]


@dataclass(frozen=True)
class LookupNode(Node):
    """Ask for a case reference, have the service look it up, and say the case's standing in plain words.

    A reference that fails its check digit, one that names no case, and silence all count as one wrong
    try; after `tries` of them the call takes `on_fail` (which should offer a new report). References
    that name no case also count against the calling number, across calls: after `tries_per_hour` of
    them in an hour its calls get no further look-ups, only `too_many` and then `on_fail`.
    """

    type: ClassVar[str] = "lookup"
    prompt: Prompt
    standing: Mapping[str, Prompt]  # one prompt per STANDINGS word
    found: Branch
    on_fail: Branch
    tries: int = 3
    timeout: int = 10
    no_input: Prompt | None = None
    invalid: Prompt | None = None
    not_found: Prompt | None = None
    too_many: Prompt | None = None
    tries_per_hour: int = 5

    def targets(self) -> list[tuple[str, str]]:
        return _branch_targets("found.next", self.found) + _branch_targets("on_fail.next", self.on_fail)

    def prompts(self) -> list[tuple[str, Prompt]]:
        out = [("prompt", self.prompt)]
        out += [
            (n, p)
            for n, p in (
                ("no_input", self.no_input),
                ("invalid", self.invalid),
                ("not_found", self.not_found),
                ("too_many", self.too_many),
            )
            if p
        ]
        out += [(f"standing.{word}", p) for word, p in self.standing.items()]
        return (
            out
            + _branch_prompts("found.prompt", self.found)
            + _branch_prompts("on_fail.prompt", self.on_fail)
        )


@dataclass(frozen=True)
class HangupNode(Node):
    type: ClassVar[str] = "hangup"
    prompt: Prompt | None = None

    def prompts(self) -> list[tuple[str, Prompt]]:
        return [("prompt", self.prompt)] if self.prompt else []


@dataclass(frozen=True)
class Rescue:
    """What a caller hears when their call state is lost or the service fails: leave a message."""

    prompt: Prompt
    thanks: Prompt
    max_length: int = 180


@dataclass(frozen=True)
class Flow:
    name: str
    path: str
    default_language: str
    start: str
    nodes: Mapping[str, Node]
    rescue: Rescue
    sensitive_vars: frozenset[str]


_PROMPT_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string"},
        {
            "type": "object",
            "properties": {
                "th": {"type": "string"},
                "en": {"type": "string"},
                "audio": {
                    "type": "object",
                    "properties": {"th": {"type": "string"}, "en": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
    ]
}

FLOW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["flow", "start", "nodes", "rescue"],
    "properties": {
        "flow": {"type": "string"},
        "version": {"type": "integer"},
        "default_language": {"enum": list(LANGUAGES)},
        "start": {"type": "string"},
        "rescue": {
            "type": "object",
            "required": ["prompt", "thanks"],
            "properties": {
                "prompt": _PROMPT_SCHEMA,
                "thanks": _PROMPT_SCHEMA,
                "max_length": {"type": "integer", "minimum": 10, "maximum": 3600},
            },
            "additionalProperties": False,
        },
        "nodes": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type"],
                "properties": {"type": {"type": "string"}},
            },
        },
    },
    "additionalProperties": False,
}


class _Reader:
    """Reads one node's mapping, turning every wrong or missing field into a FlowError."""

    def __init__(self, path: Path | str, node_id: str, data: Mapping[str, Any]) -> None:
        self.path, self.node, self.data = path, node_id, data
        self.used: set[str] = {"id", "type"}

    def fail(self, field_name: str | None, problem: str) -> FlowError:
        return FlowError(self.path, self.node, field_name, problem)

    def raw(self, key: str, default: Any = ..., *, name: str | None = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.fail(name or key, "is required")
            return default
        return self.data[key]

    def str_(self, key: str, default: Any = ...) -> Any:
        value = self.raw(key, default)
        if value is not default and not isinstance(value, str):
            raise self.fail(key, f"must be text, got {type(value).__name__}")
        return value

    def int_(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be a whole number from {low} to {high}, got {value!r}")
        return value

    def prompt(self, key: str, default: Any = ..., value: Any = ...) -> Any:
        if value is ...:
            value = self.raw(key, default)
            if value is default:
                return default
        return _parse_prompt(value, self, key)

    def branch(self, key: str, value: Any = ..., *, required: bool = True) -> Branch:
        if value is ...:
            value = self.raw(key, ... if required else None)
        if value is None:
            return Branch(next=None)
        if isinstance(value, str):
            return Branch(next=value)
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a node id or a mapping with next/set/language/repeat/prompt")
        unknown = set(value) - {"next", "set", "language", "repeat", "prompt"}
        if unknown:
            raise self.fail(f"{key}.{sorted(unknown)[0]}", "is not a branch field")
        sets = value.get("set", {})
        if not isinstance(sets, Mapping) or not all(isinstance(v, str) for v in sets.values()):
            raise self.fail(f"{key}.set", "must map variable names to text values")
        for var in sets:
            if var not in SETTABLE_VARS:
                raise self.fail(
                    f"{key}.set.{var}", f"is not a variable a flow may set ({sorted(SETTABLE_VARS)})"
                )
        language = value.get("language")
        if language is not None and language not in LANGUAGES:
            raise self.fail(f"{key}.language", f"must be one of {list(LANGUAGES)}")
        nxt = value.get("next")
        repeat = bool(value.get("repeat", False))
        if nxt is None and not repeat:
            raise self.fail(f"{key}.next", "is required unless repeat is true")
        prompt = _parse_prompt(value["prompt"], self, f"{key}.prompt") if "prompt" in value else None
        return Branch(next=nxt, set=dict(sets), language=language, repeat=repeat, prompt=prompt)

    def key(self, key: str, default: Any = ...) -> Any:
        value = self.str_(key, default)
        if value is not default and value is not None and (len(value) != 1 or value not in "0123456789*#"):
            raise self.fail(key, f"must be one phone key (0-9, * or #), got {value!r}")
        return value

    def confirm(self, key: str, required: bool) -> Confirm | None:
        value = self.raw(key, ... if required else None)
        if value is None:
            return None
        if not isinstance(value, Mapping) or "prompt" not in value:
            raise self.fail(key, "must be a mapping with a prompt (and optional confirm_key, retry_key)")
        sub = _Reader(self.path, self.node, value)
        c = Confirm(
            prompt=sub.prompt("prompt"),
            confirm_key=sub.key("confirm_key", "1"),
            retry_key=sub.key("retry_key", "2"),
        )
        sub.finish(prefix=f"{key}.")
        if c.confirm_key == c.retry_key:
            raise self.fail(f"{key}.retry_key", "must differ from confirm_key")
        return c

    def finish(self, prefix: str = "") -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(prefix + unknown[0], "is not a field of this node type")


def _parse_prompt(value: Any, reader: _Reader, key: str) -> Prompt:
    if isinstance(value, str):
        value = {"th": value}
    if not isinstance(value, Mapping):
        raise reader.fail(key, "must be text or a mapping of th/en/audio")
    unknown = set(value) - {"th", "en", "audio"}
    if unknown:
        raise reader.fail(f"{key}.{sorted(unknown)[0]}", "is not a prompt field (th, en, audio)")
    text = {lang: value[lang] for lang in LANGUAGES if lang in value}
    if not text.get("th", "").strip():
        raise reader.fail(key, "has no Thai text (th): every prompt needs one")
    for lang, t in text.items():
        if not isinstance(t, str):
            raise reader.fail(f"{key}.{lang}", "must be text")
        try:
            parts = list(string.Formatter().parse(t))
        except ValueError as exc:
            raise reader.fail(
                f"{key}.{lang}", f"is not a valid template ({exc}); write {{{{ or }}}} for a brace"
            ) from exc
        for _, name, _, _ in parts:
            if name is not None and name not in PLACEHOLDERS:
                raise reader.fail(f"{key}.{lang}", f"uses unknown placeholder {{{name}}}")
        _try_speaking(t, lang, reader, key)
    audio = value.get("audio", {}) or {}
    if not isinstance(audio, Mapping):
        raise reader.fail(f"{key}.audio", "must map language to an audio file name")
    for lang, name in audio.items():
        if lang not in LANGUAGES or not isinstance(name, str) or "/" in name or name.startswith("."):
            raise reader.fail(f"{key}.audio.{lang}", "must be a file name under ivr_flows/audio")
    return Prompt(text=text, audio=dict(audio))


def _try_speaking(text: str, lang: str, reader: _Reader, key: str) -> None:
    """Fill the placeholders with sample values as the engine would, or fail naming the prompt.

    A format spec or conversion that text cannot take ({reference:d}, {value!z}) passes the parse above
    and would raise on every call that reaches the prompt.
    """
    sample = _SAMPLE_VALUES.get(lang, _SAMPLE_VALUES["th"])
    values = {
        **{name: sample.get(name, "") for name in PLACEHOLDERS},
        "followup_reference": sample["reference"],
    }
    try:
        text.format_map(values)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise reader.fail(f"{key}.{lang}", f"cannot be spoken: {exc}") from exc


class FlowUnreadable(FlowError):
    """The flow file cannot be read as text at all (missing, unreadable, not UTF-8)."""


def _parse_hours(r: _Reader) -> OfficeHours:
    raw = r.raw("hours")
    if not isinstance(raw, Mapping):
        raise r.fail("hours", "must be a mapping with timezone, days, open, close")
    tz = raw.get("timezone", "Asia/Bangkok")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise r.fail("hours.timezone", f"{tz!r} is not an IANA time zone") from exc
    days = raw.get("days", list(DAY_NAMES[:5]))
    if not isinstance(days, list) or not days or any(d not in DAY_NAMES for d in days):
        raise r.fail("hours.days", f"must be a list of {list(DAY_NAMES)}")

    def clock(name: str) -> time:
        value = raw.get(name)
        try:
            hh, mm = str(value).split(":")
            return time(int(hh), int(mm))
        except (ValueError, TypeError) as exc:
            raise r.fail(f"hours.{name}", f"must be HH:MM, got {value!r}") from exc

    opens, closes = clock("open"), clock("close")
    if not opens < closes:
        raise r.fail("hours.close", "must be after open")
    return OfficeHours(tz, frozenset(DAY_NAMES.index(d) for d in days), opens, closes)


def _build_say(r: _Reader) -> Node:
    return SayNode(id=r.node, prompt=r.prompt("prompt"), next=r.str_("next"))


def _build_menu(r: _Reader) -> Node:
    options_raw = r.raw("options")
    if not isinstance(options_raw, Mapping) or not options_raw:
        raise r.fail("options", "must map phone keys to branches")
    options: dict[str, Branch] = {}
    for key, value in options_raw.items():
        k = str(key)
        if len(k) != 1 or k not in "0123456789*#":
            raise r.fail(f"options.{k}", "is not one phone key (0-9, * or #)")
        options[k] = r.branch(f"options.{k}", value)
    return MenuNode(
        id=r.node,
        prompt=r.prompt("prompt"),
        options=options,
        default=r.branch("default"),
        tries=r.int_("tries", 3, 1, 10),
        timeout=r.int_("timeout", 6, 1, 60),
        no_input=r.prompt("no_input", None),
        invalid=r.prompt("invalid", None),
    )


def _build_digits(r: _Reader) -> Node:
    validate = r.str_("validate")
    if validate not in VALIDATORS:
        raise r.fail("validate", f"unknown validator {validate!r} (known: {sorted(VALIDATORS)})")
    length = r.raw("length", None)
    finish_key = r.key("finish_key", None)
    if (length is None) == (finish_key is None):
        raise r.fail("length", "give exactly one of length (fixed digits) or finish_key")
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 20
    ):
        raise r.fail("length", f"must be a whole number from 1 to 20, got {length!r}")
    skip = None
    skip_raw = r.raw("skip", None)
    if skip_raw is not None:
        if not isinstance(skip_raw, Mapping) or "key" not in skip_raw:
            raise r.fail("skip", "must be a mapping with key and next")
        sub = _Reader(r.path, r.node, skip_raw)
        skip_key = sub.key("key")
        if skip_key == finish_key:
            raise r.fail("skip.key", "must differ from finish_key (Twilio would swallow it)")
        rest = {k: v for k, v in skip_raw.items() if k != "key"}
        skip = (skip_key, r.branch("skip", rest))
    speech_raw = r.raw("speech", None)
    speech = None
    if speech_raw is not None and speech_raw is not False:
        if speech_raw is True:
            speech = SpeechInput()
        elif isinstance(speech_raw, Mapping):
            sub = _Reader(r.path, r.node, speech_raw)
            speech = SpeechInput(language=sub.str_("language", "th-TH"), hints=sub.str_("hints", "provinces"))
            sub.finish(prefix="speech.")
        else:
            raise r.fail("speech", "must be true, false or a mapping with language and hints")
        if validate != "province":
            raise r.fail("speech", "speech input is only understood for the province validator")
    return DigitsNode(
        id=r.node,
        prompt=r.prompt("prompt"),
        store=r.str_("store"),
        validate=validate,
        next=r.str_("next"),
        on_fail=r.branch("on_fail"),
        length=length,
        finish_key=finish_key,
        skip=skip,
        confirm=r.confirm("confirm", required=False),
        speech=speech,
        tries=r.int_("tries", 3, 1, 10),
        timeout=r.int_("timeout", 8, 1, 60),
        no_input=r.prompt("no_input", None),
        invalid=r.prompt("invalid", None),
        sensitive=bool(r.raw("sensitive", False)),
    )


def _build_record(r: _Reader) -> Node:
    confirm = r.confirm("confirm", required=True)
    assert confirm is not None
    return RecordNode(
        id=r.node,
        prompt=r.prompt("prompt"),
        next=r.str_("next"),
        confirm=confirm,
        max_length=r.int_("max_length", 180, 5, 3600),
        finish_key=r.key("finish_key", "#"),
        silence_timeout=r.int_("silence_timeout", 10, 1, 60),
        tries=r.int_("tries", 3, 1, 10),
        max_rerecords=r.int_("max_rerecords", 3, 0, 10),
        no_input=r.prompt("no_input", None),
        invalid=r.prompt("invalid", None),
        on_fail=_moving_branch(r, "on_fail", required=False),
    )


def _build_transfer(r: _Reader) -> Node:
    return TransferNode(
        id=r.node,
        prompt=r.prompt("prompt"),
        hours=_parse_hours(r),
        closed=r.branch("closed"),
        answered=r.branch("answered"),
        unanswered=r.branch("unanswered"),
        dial_timeout=r.int_("dial_timeout", 25, 5, 120),
    )


def _build_branch(r: _Reader) -> Node:
    condition = r.str_("if")
    if condition not in CONDITIONS:
        raise r.fail("if", f"unknown condition {condition!r} (known: {sorted(CONDITIONS)})")
    # A branch may set variables on the way (a caller without caller ID who asked to be called back
    # "on this number" keys another number, so the callback becomes "other").
    then, otherwise = r.branch("then"), r.branch("else")
    for key, taken in (("then", then), ("else", otherwise)):
        if taken.repeat or taken.next is None:
            raise r.fail(key, "must name the next node: a branch node cannot repeat")
    return BranchNode(id=r.node, condition=condition, then=then, otherwise=otherwise)


def _moving_branch(r: _Reader, key: str, *, required: bool = True) -> Branch | None:
    """A branch that must lead somewhere: the node it leaves cannot be asked again."""
    if not required and r.raw(key, None) is None:
        return None
    taken = r.branch(key)
    if taken.repeat or taken.next is None:
        raise r.fail(key, "must name the next node: this branch cannot repeat")
    return taken


def _build_submit(r: _Reader) -> Node:
    raw = r.str_("effect", "open_case")
    effect = SUBMIT_EFFECTS.get(raw)
    if effect is None:
        raise r.fail("effect", f"unknown effect {raw!r} (known: {sorted(SUBMIT_EFFECTS)})")
    return SubmitNode(id=r.node, next=r.str_("next"), effect=effect)


def _build_lookup(r: _Reader) -> Node:
    raw = r.raw("standing")
    if not isinstance(raw, Mapping):
        raise r.fail("standing", f"must map each of {list(STANDINGS)} to a prompt")
    for word in raw:
        if word not in STANDINGS:
            raise r.fail(f"standing.{word}", f"is not a standing a caller may hear ({list(STANDINGS)})")
    standing: dict[str, Prompt] = {}
    for word in STANDINGS:
        if word not in raw:
            raise r.fail(f"standing.{word}", "is required: every standing needs its words")
        standing[word] = r.prompt(f"standing.{word}", value=raw[word])
    found, on_fail = _moving_branch(r, "found"), _moving_branch(r, "on_fail")
    assert found is not None and on_fail is not None
    return LookupNode(
        id=r.node,
        prompt=r.prompt("prompt"),
        standing=standing,
        found=found,
        on_fail=on_fail,
        tries=r.int_("tries", 3, 1, 10),
        timeout=r.int_("timeout", 10, 1, 60),
        no_input=r.prompt("no_input", None),
        invalid=r.prompt("invalid", None),
        not_found=r.prompt("not_found", None),
        too_many=r.prompt("too_many", None),
        tries_per_hour=r.int_("tries_per_hour", 5, 1, 100),
    )


def _build_hangup(r: _Reader) -> Node:
    return HangupNode(id=r.node, prompt=r.prompt("prompt", None))


NODE_TYPES = {
    "say": _build_say,
    "menu": _build_menu,
    "digits": _build_digits,
    "record": _build_record,
    "transfer": _build_transfer,
    "branch": _build_branch,
    "submit": _build_submit,
    "lookup": _build_lookup,
    "hangup": _build_hangup,
}
# Nodes that answer without waiting for the caller; a cycle made only of these would never end.
_PASS_THROUGH = (SayNode, BranchNode, SubmitNode)


def parse_flow(data: Any, path: Path | str = "<flow>", audio_dir: Path | None = None) -> Flow:
    """Check a flow's structure and references and build it; raise FlowError naming what is wrong."""
    if not isinstance(data, Mapping):
        raise FlowError(path, None, None, "the file must hold a mapping with flow, start, rescue and nodes")
    validator = jsonschema.Draft202012Validator(FLOW_SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        loc = list(err.absolute_path)
        node_id = None
        if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
            raw_node = data["nodes"][loc[1]]
            node_id = str(raw_node.get("id", f"#{loc[1]}")) if isinstance(raw_node, Mapping) else f"#{loc[1]}"
            loc = loc[2:]
        if isinstance(err.instance, Mapping):
            # Name the missing or unexpected key itself, not the mapping that holds it.
            if err.validator == "required":
                loc += [k for k in err.validator_value if k not in err.instance][:1]
            elif err.validator == "additionalProperties":
                loc += sorted(str(k) for k in err.instance if k not in err.schema.get("properties", {}))[:1]
        field_name = ".".join(str(p) for p in loc) or None
        raise FlowError(path, node_id, field_name, err.message)

    nodes: dict[str, Node] = {}
    for index, raw in enumerate(data["nodes"]):
        node_id = str(raw["id"])
        if node_id in nodes:
            raise FlowError(path, node_id, "id", f"duplicate id (node #{index + 1})")
        kind = raw["type"]
        build = NODE_TYPES.get(kind)
        if build is None:
            raise FlowError(
                path, node_id, "type", f"unknown node type {kind!r} (known: {sorted(NODE_TYPES)})"
            )
        reader = _Reader(path, node_id, raw)
        node = build(reader)
        reader.finish()
        nodes[node_id] = node

    start = data["start"]
    if start not in nodes:
        raise FlowError(path, None, "start", f"names no node: {start!r}")
    for node in nodes.values():
        for field_name, target in node.targets():
            if target not in nodes:
                raise FlowError(path, node.id, field_name, f"dangling next: no node {target!r}")
        for field_name, prompt in node.prompts():
            for lang, audio in prompt.audio.items():
                if audio_dir is not None and not (audio_dir / audio).is_file():
                    raise FlowError(
                        path, node.id, f"{field_name}.audio.{lang}", f"no file {audio_dir / audio}"
                    )

    _check_pass_through_cycles(nodes, path)
    rescue_reader = _Reader(path, "rescue", data["rescue"])
    rescue = Rescue(
        prompt=rescue_reader.prompt("prompt"),
        thanks=rescue_reader.prompt("thanks"),
        max_length=int(data["rescue"].get("max_length", 180)),
    )
    sensitive = frozenset(n.store for n in nodes.values() if isinstance(n, DigitsNode) and n.sensitive)
    return Flow(
        name=str(data["flow"]),
        path=str(path),
        default_language=str(data.get("default_language", "th")),
        start=start,
        nodes=nodes,
        rescue=rescue,
        sensitive_vars=sensitive,
    )


def _check_pass_through_cycles(nodes: Mapping[str, Node], path: Path | str) -> None:
    for origin in nodes.values():
        if not isinstance(origin, _PASS_THROUGH):
            continue
        seen: list[str] = []
        stack = [origin.id]
        while stack:
            current = nodes[stack.pop()]
            if not isinstance(current, _PASS_THROUGH):
                continue
            if current.id in seen:
                if current.id == origin.id:
                    raise FlowError(
                        path, origin.id, "next", "loops back to itself without waiting for the caller"
                    )
                continue
            seen.append(current.id)
            stack.extend(t for _, t in current.targets())


def load_flow(path: Path | str) -> Flow:
    """Read and check a flow file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowUnreadable(p, None, None, f"cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise FlowUnreadable(
            p, None, None, f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from exc
    try:
        # libyaml's parser where installed: a flow loads 10x faster, which every app start and test pays.
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise FlowError(p, None, None, f"is not valid YAML: {exc}") from exc
    return parse_flow(data, p, audio_dir=p.parent / "audio")
