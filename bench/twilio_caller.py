"""One call's webhooks as Twilio sends them, to the app under gunicorn, for bench/stalls.py.

Signed with the auth token over the public URL, carrying the standard voice parameters; each answer
timed as Twilio waits for it and named by what it asks of the caller (the TwiML kind).
"""

from __future__ import annotations

import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import gunicorn_server as gs
import requests
from twilio.request_validator import RequestValidator

REQUEST_TIMEOUT_S = 20.0  # past Twilio's 15 s: a slower answer is measured, not cut off


@dataclass
class Answer:
    webhook: str
    seconds: float
    kind: str
    root: ET.Element | None = None


def twiml_kind(status: int, body: bytes, thanks_text: str) -> tuple[str, ET.Element | None]:
    if status != 200:
        return f"HTTP {status}", None
    try:
        root = ET.fromstring(body)  # noqa: S314 - our own app's answer
    except ET.ParseError:
        return "not XML", None
    verbs = [child.tag for child in root]
    record = root.find("Record")
    if not verbs:
        return "200 empty", root
    if record is not None and record.get("action", "").endswith("/twilio/rescue-recording"):
        return "rescue prompt", root
    if verbs == ["Say", "Hangup"]:
        return ("thanks" if (root[0].text or "").strip() == thanks_text else "goodbye"), root
    if record is not None:
        return "record step", root
    return ("IVR step" if root.find("Gather") is not None else "+".join(verbs)), root


class Caller:
    """One call's requests, signed and shaped as Twilio sends them, to the app under gunicorn."""

    def __init__(self, base_url: str, token: str, thanks_text: str, number: str) -> None:
        self.base_url = base_url
        self.validator = RequestValidator(token)
        self.thanks_text = thanks_text
        self.call_sid = "CA" + secrets.token_hex(16)
        self.number = number
        self.http = requests.Session()

    def post(self, webhook: str, url: str, **extra: str) -> Answer:
        public = url if url.startswith("http") else gs.PUBLIC_BASE + url
        form = {
            "AccountSid": gs.ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "in-progress",
            "Called": "+6621266565",
            "Caller": self.number,
            "Direction": "inbound",
            "From": self.number,
            "To": "+6621266565",
            **extra,
        }
        headers = {"X-Twilio-Signature": self.validator.compute_signature(public, form)}
        started = time.perf_counter()
        try:
            resp = self.http.post(
                self.base_url + public[len(gs.PUBLIC_BASE) :],
                data=form,
                headers=headers,
                timeout=REQUEST_TIMEOUT_S,
            )
            status, body = resp.status_code, resp.content
        except requests.RequestException as exc:
            return Answer(webhook, time.perf_counter() - started, f"no answer ({type(exc).__name__})")
        took = time.perf_counter() - started
        kind, root = twiml_kind(status, body, self.thanks_text)
        return Answer(webhook, took, kind, root)

    def close(self) -> None:
        self.http.close()


def action(answer: Answer, verb: str) -> str:
    el = answer.root.find(verb) if answer.root is not None else None
    if el is None or "action" not in el.attrib:
        raise RuntimeError(f"{answer.webhook}: expected <{verb}> in the answer, got {answer.kind}")
    return el.attrib["action"]


def recorded(sid: str, digits: str, duration: int = 12) -> dict[str, str]:
    url = f"https://api.twilio.com/2010-04-01/Accounts/{gs.ACCOUNT_SID}/Recordings/{sid}"
    form = {"RecordingSid": sid, "RecordingUrl": url, "RecordingDuration": str(duration)}
    return {**form, "Digits": digits} if digits else form


def walk(caller: Caller, keys: Sequence[str], *, to_record: bool) -> Answer:
    """Ring and key through the menus (before the stall); the last answer."""
    step = caller.post("walk", "/twilio/voice")
    for key in keys:
        step = caller.post("walk", action(step, "Gather"), Digits=key)
    for _ in range(3):  # read-backs: confirm with 1 until the message is asked for
        if not to_record or (step.root is not None and step.root.find("Record") is not None):
            break
        step = caller.post("walk", action(step, "Gather"), Digits="1")
    if to_record and step.kind != "record step":
        raise RuntimeError(f"the walk to the message ended at {step.kind}: is the database stalled already?")
    if not to_record and step.kind != "IVR step":
        raise RuntimeError(f"the walk to the menu ended at {step.kind}")
    return step
