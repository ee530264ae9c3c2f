"""The caller's path through the phone menu as sentences: "กด 1: ความรุนแรง", "พูดชื่อจังหวัด: เชียงใหม่".

A key and the choice it made are one step; a province is named, not coded; every other step of the flow
reads in words (console.i18n's tables), never as the engine's codes (`ask_province`, `via: keys`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import geothai
from flask import Flask

from console.i18n import (
    CALL_EVENT_WORDS,
    CALLBACK_WORDS,
    HAZARD_WORDS,
    IVR_NODE_WORDS,
    LANGUAGE_WORDS,
    N_,
    _,
    call_detail,
    current_locale,
    words,
)

# What a choice on a menu set (CallEvent "set", its variable), in words.
CHOICE_TABLES: dict[str, Mapping[Any, str]] = {"category": HAZARD_WORDS, "callback": CALLBACK_WORDS}
# Nodes whose answer is named in its own sentence; a sensitive answer (a phone number) is never shown.
ENTERED_WORDS: dict[str, dict[str, str]] = {
    "ask_province": {
        "speech": N_("Said the province: %(value)s"),
        "keys": N_("Keyed the province: %(value)s"),
    },
}
ENTERED_NO_VALUE: dict[str, str] = {
    "ask_callback_number": N_("Keyed a call back number"),
    "ask_reference": N_("Keyed a case reference"),
}


# Not for staff: the recording's SID, how an answer came (said in the sentence), the engine's input type.
HIDDEN_DETAILS = frozenset({"sid", "via", "kind"})


@dataclass(frozen=True)
class Step:
    at: datetime
    text: str


def _choice(detail: Mapping[str, Any]) -> str | None:
    for var, value in detail.items():
        if var in CHOICE_TABLES:
            return words(CHOICE_TABLES[var], value)
    return None


def _details(detail: Mapping[str, Any]) -> list[str]:
    return [call_detail(k, v) for k, v in detail.items() if v and k not in HIDDEN_DETAILS]


def _entered(node: str, detail: Mapping[str, Any], province: Callable[[str], str]) -> str:
    via = str(detail.get("via", "keys"))
    value = detail.get("value")
    if node in ENTERED_WORDS and value:
        return _(ENTERED_WORDS[node]["speech" if via == "speech" else "keys"], value=province(str(value)))
    if node in ENTERED_NO_VALUE:
        return _(ENTERED_NO_VALUE[node])
    if value:
        message = N_("Said: %(value)s (%(node)s)") if via == "speech" else N_("Keyed %(value)s (%(node)s)")
        return _(message, value=value, node=words(IVR_NODE_WORDS, node))
    return _("Answered (%(node)s)", node=words(IVR_NODE_WORDS, node))


def _sentence(kind: str, node: str, detail: Mapping[str, Any], province: Callable[[str], str]) -> str:
    if kind == "entered":
        return _entered(node, detail, province)
    if kind == "set" and (choice := _choice(detail)) is not None:
        return _("Chosen: %(choice)s", choice=choice)
    if kind == "language" and detail.get("language"):
        return _("Language: %(language)s", language=words(LANGUAGE_WORDS, detail["language"]))
    if kind == "recorded" and detail.get("duration_s"):
        return _("Left a message of %(n)s seconds", n=detail["duration_s"])
    event, where = words(CALL_EVENT_WORDS, kind), words(IVR_NODE_WORDS, node)
    text = event if where == event else f"{event} ({where})"
    shown = _details({k: v for k, v in detail.items() if k != "duration_s"})
    return f"{text}: {', '.join(shown)}" if shown else text


def _key(e: Any, after: Any) -> tuple[str, int]:
    """A key pressed, with the choice it made when the next event is that choice: (sentence, events used)."""
    key = (e.detail or {}).get("key", "")
    if after is not None and after.kind == "set" and after.node == e.node:
        choice = _choice(after.detail or {})
        if choice is not None:
            return _("Pressed %(key)s: %(choice)s", key=key, choice=choice), 2
    return _("Pressed %(key)s (%(node)s)", key=key, node=words(IVR_NODE_WORDS, e.node)), 1


def ivr_steps(events: Sequence[Any], province: Callable[[str], str]) -> list[Step]:
    """The path's events (CallEvent rows: at, kind, node, detail) as sentences, a key joined to its choice."""
    steps: list[Step] = []
    i = 0
    while i < len(events):
        e = events[i]
        if e.kind == "key":
            text, used = _key(e, events[i + 1] if i + 1 < len(events) else None)
        else:
            text, used = _sentence(e.kind, e.node, dict(e.detail or {}), province), 1
        steps.append(Step(e.at, text))
        i += used
    return steps


def province_name(code: str) -> str:
    """A province by its 2-digit code in the reader's language ("เชียงใหม่"); an unknown code as it is."""
    province = geothai.province(code)
    if province is None:
        return code
    return str(province.name_th if current_locale() == "th" else province.name_en)


def init_app(app: Flask) -> None:
    app.jinja_env.globals["ivr_path"] = lambda events: ivr_steps(events, province_name)
