"""The verbs a caller hears or answers: ``<Say>``, ``<Play>``, ``<Pause>``, ``<Gather>``, a ``<Dial>``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Final
from urllib.parse import urljoin

from telephony.simulator.events import CallEnded, CallEvent
from telephony.simulator.script import DEFAULT_DIAL_SECONDS, ActionKind, CallerAction
from telephony.simulator.sender import FetchError
from telephony.simulator.twilio_api import new_sid
from telephony.simulator.twiml import DIAL_CHILDREN, NO_FETCH_ATTR, Document, int_attr

if TYPE_CHECKING:
    from telephony.simulator.player import Call

SPEECH_CONFIDENCE: Final = "0.9"


def speak(call: Call, doc: Document, el: ET.Element) -> None:
    """``<Say>``, ``<Play>`` or ``<Pause>``: the caller hears it; the call's clock moves on."""
    loop = max(1, int_attr(el, "loop", 1))
    if el.tag == "Say":
        text = "".join(el.itertext()).strip()
        language = el.get("language") or "en-US"
        voice = el.get("voice")
        if language.lower().startswith("th") and not (voice or "").startswith("Google."):
            call.emit(
                CallEvent(
                    kind="warning",
                    text=f"<Say language={language!r}> with voice {voice or '(default)'!r}: only Google "
                    "voices speak Thai",
                )
            )
        call.emit(CallEvent(kind="say", text=text, language=language, voice=voice))
        call.clock_s += loop * max(1.0, len(text) / 12)
    elif el.tag == "Play":
        digits = el.get("digits")
        url = urljoin(doc.url, (el.text or "").strip()) if (el.text or "").strip() else None
        call.emit(CallEvent(kind="play", url=url, text=digits or ""))
        call.clock_s += loop * 3.0
        fetch = call.config.fetch_media and el.get(NO_FETCH_ATTR) is None
        if url is not None and fetch and call.sender.is_public(url):
            _check_media(call, url)
    else:  # Pause
        length = int_attr(el, "length", 1)
        call.emit(CallEvent(kind="pause", seconds=float(length)))
        call.clock_s += length


def _check_media(call: Call, url: str) -> None:
    try:
        resp, _ = call.sender.send("GET", url, {}, "play-media")
    except FetchError as err:
        call.emit(CallEvent(kind="warning", code=err.code, text=f"<Play> {err.message}", url=url))
        return
    ctype = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if not 200 <= resp.status_code < 300:
        call.emit(
            CallEvent(
                kind="warning",
                code=11200,
                text="<Play> media not found",
                url=url,
                status=resp.status_code,
            )
        )
    elif not ctype.startswith("audio/"):
        call.emit(
            CallEvent(kind="warning", code=13420, text=f"<Play> content type {ctype!r} is not audio", url=url)
        )


def gather(call: Call, doc: Document, el: ET.Element) -> Document | None:
    """``<Gather>``: the prompts play, the script's next token answers; the action's document, or None
    when Twilio goes on with the next verb (no input, unless ``actionOnEmptyResult``)."""
    for child in el:
        speak(call, doc, child)
    modes = set((el.get("input") or "dtmf").lower().split())
    finish = el.get("finishOnKey", "#")
    num_digits = int_attr(el, "numDigits", 0)
    timeout = int_attr(el, "timeout", 5)
    action = urljoin(doc.url, el.get("action") or "") if el.get("action") else doc.url
    method = (el.get("method") or "POST").upper()
    on_empty = (el.get("actionOnEmptyResult") or "false").lower() == "true"
    prompt = _gather_prompt(el, modes, finish, num_digits, timeout)
    call.emit(CallEvent(kind="gather-prompt", text=prompt, url=action, method=method))
    accepts: frozenset[ActionKind] = frozenset({"digits", "speech", "silence", "hangup"})
    act = call.cursor.take("Gather", accepts, prompt)
    if act is None:
        raise call.caller_hangs_up("the script ran out at a <Gather>")
    if act.kind == "hangup":
        call.emit(CallEvent(kind="input", text=act.raw, outcome="hangup"))
        raise call.caller_hangs_up("during <Gather>")
    params, outcome = _gathered(call, act, modes, finish, num_digits, timeout)
    call.emit(CallEvent(kind="input", text=act.raw, outcome=outcome))
    if params is None:
        if not on_empty:
            return None
        params = {"Digits": ""} if "dtmf" in modes else {}
    return call.load(action, method, params, "gather-action")


def _gather_prompt(el: ET.Element, modes: set[str], finish: str, num_digits: int, timeout: int) -> str:
    asks = []
    if "dtmf" in modes:
        asks.append(f"digits (numDigits={num_digits or 'any'}, finishOnKey={finish!r}, timeout={timeout}s)")
    if "speech" in modes:
        language = el.get("language") or "en-US"
        hints = el.get("hints")
        asks.append(f"speech (language={language}{', hints=' + hints if hints else ''})")
    return " or ".join(asks) or f"input {el.get('input')!r}"


def _gathered(
    call: Call, act: CallerAction, modes: set[str], finish: str, num_digits: int, timeout: int
) -> tuple[dict[str, str] | None, str]:
    """The action's parameters for what the caller did (None: no input) and the outcome to show."""
    params: dict[str, str] | None = None
    outcome = "no input"
    if act.kind == "digits":
        if "dtmf" in modes:
            digits, how = _collect_digits(act.digits, finish, num_digits)
            if digits:
                params = {"Digits": digits}
                outcome = f"Digits={digits} ({how})"
            else:
                outcome = f"no digits ({how})"
        else:
            outcome = "keys ignored: the <Gather> does not listen for dtmf"
        call.clock_s += 1 + len(act.digits) * 0.5
    elif act.kind == "speech":
        if "speech" in modes:
            params = {"SpeechResult": act.speech, "Confidence": SPEECH_CONFIDENCE}
            outcome = f"SpeechResult={act.speech}"
        else:
            outcome = "speech ignored: the <Gather> does not listen for speech"
        call.clock_s += 2
    else:
        call.clock_s += timeout
    return params, outcome


def _collect_digits(keys: str, finish: str, num_digits: int) -> tuple[str, str]:
    collected: list[str] = []
    for key in keys:
        if finish and key in finish:
            return "".join(collected), f"finished with {key!r}"
        collected.append(key)
        if num_digits and len(collected) >= num_digits:
            return "".join(collected), f"numDigits={num_digits} reached"
    return "".join(collected), "timeout"


def dial(call: Call, doc: Document, el: ET.Element) -> Document | None:
    """An inbound call's ``<Dial>``: a ``dial…`` or ``hangup`` token says how it ends (else answered)."""
    targets = [(c.text or "").strip() for c in el if c.tag in DIAL_CHILDREN]
    if (el.text or "").strip():
        targets.insert(0, (el.text or "").strip())
    action = urljoin(doc.url, el.get("action") or "") if el.get("action") else None
    method = (el.get("method") or "POST").upper()
    timeout = int_attr(el, "timeout", 30)
    prompt = f"dial outcome for {', '.join(targets) or '(nobody)'} [completed]"
    upcoming = call.cursor.peek()
    act: CallerAction | None = None
    if upcoming is None or upcoming.kind in ("dial", "hangup"):
        act = call.cursor.take("Dial", frozenset({"dial", "hangup"}), prompt)
    if act is None:
        act = CallerAction(kind="dial", raw="(default)", seconds=DEFAULT_DIAL_SECONDS)
    caller_hung_up = act.kind == "hangup"
    status = "completed" if caller_hung_up else act.dial_status
    duration = act.seconds if status == "completed" else 0
    call.emit(
        CallEvent(
            kind="dial",
            text=", ".join(targets),
            outcome=status,
            seconds=float(duration),
            url=action,
            method=method if action else None,
        )
    )
    call.clock_s += duration if status == "completed" else (timeout if status == "no-answer" else 1)
    params = {"DialCallStatus": status, "DialCallSid": new_sid("CA"), "DialCallDuration": str(duration)}
    if caller_hung_up:
        call.call_status = "completed"
        call.emit(CallEvent(kind="hangup", text="caller hangs up during <Dial>"))
        if action is not None:
            try:
                call.load(action, method, params, "dial-action")
            except FetchError as err:
                call.emit(CallEvent(kind="warning", code=err.code, text=err.message, url=err.url))
        raise CallEnded("caller-hangup")
    if action is None:
        return None
    return call.load(action, method, params, "dial-action")
