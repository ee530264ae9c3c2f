"""The app's answer read as Twilio reads it: content types, parse errors, and the TwiML schema's verbs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final

import requests

from telephony.simulator.sender import FetchError, excerpt

TWIML_CONTENT_TYPES: Final = frozenset({"text/xml", "application/xml", "text/html"})

# Verbs Twilio knows. Those in SKIPPED_VERBS do not block the call flow and are skipped with a warning;
# the other known-but-unsimulated ones end the call (the simulator cannot say what Twilio would do next).
SIMULATED_VERBS: Final = frozenset(
    {"Say", "Play", "Pause", "Gather", "Record", "Dial", "Redirect", "Hangup", "Reject"}
)
SKIPPED_VERBS: Final = frozenset({"Start", "Stop"})
UNSIMULATED_VERBS: Final = frozenset({"Enqueue", "Leave", "Connect", "Pay", "Refer", "Echo", "Sms", "Queue"})
GATHER_CHILDREN: Final = frozenset({"Say", "Play", "Pause"})
DIAL_CHILDREN: Final = frozenset({"Number", "Client", "Sip", "Conference", "Queue", "Application"})
CHILDLESS_VERBS: Final = frozenset({"Play", "Pause", "Record", "Redirect", "Hangup", "Reject"})
NO_FETCH_ATTR: Final = "{urn:simulator}no-fetch"


@dataclass(frozen=True)
class Document:
    url: str  # public URL the document was fetched from (relative URLs resolve against it)
    root: ET.Element


def int_attr(el: ET.Element, name: str, default: int) -> int:
    value = el.get(name)
    if value is None or not value.strip():
        return default
    try:
        return int(value.strip())
    except ValueError:
        return default


def read_document(resp: requests.Response, url: str) -> Document:
    """The TwiML document of an answer from `url`; raises FetchError with the code Twilio would log."""
    text = resp.text
    if not 200 <= resp.status_code < 300:
        raise FetchError(
            11200,
            f"HTTP retrieval failure: the app answered {resp.status_code}",
            url=url,
            status=resp.status_code,
            excerpt=excerpt(text),
        )
    content_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if content_type == "text/plain":
        root = ET.Element("Response")
        ET.SubElement(root, "Say").text = text
        return Document(url, root)
    if content_type.startswith("audio/"):
        root = ET.Element("Response")
        play = ET.SubElement(root, "Play")
        play.text = url
        play.set(NO_FETCH_ATTR, "1")  # already fetched: it is this response
        return Document(url, root)
    if content_type not in TWIML_CONTENT_TYPES:
        raise FetchError(
            12300,
            f"Invalid Content-Type {content_type or '(none)'!r}: not TwiML (text/xml, application/xml)",
            url=url,
            status=resp.status_code,
            excerpt=excerpt(text),
        )
    return Document(url, _parse(resp, url))


def _parse(resp: requests.Response, url: str) -> ET.Element:
    try:
        root = ET.fromstring(resp.content)  # noqa: S314 - TwiML from the app under test
    except ET.ParseError as exc:
        raise FetchError(
            12100,
            f"Document parse failure: {exc}",
            url=url,
            status=resp.status_code,
            excerpt=excerpt(resp.text),
        ) from None
    if root.tag != "Response":
        raise FetchError(
            12100,
            f"Document parse failure: root element is <{root.tag}>, not <Response>",
            url=url,
            status=resp.status_code,
            excerpt=excerpt(resp.text),
        )
    problem = schema_problem(root)
    if problem is not None:
        raise FetchError(
            12200,
            f"Schema validation: {problem}",
            url=url,
            status=resp.status_code,
            excerpt=excerpt(resp.text),
        )
    return root


def schema_problem(root: ET.Element) -> str | None:
    """What makes a document fail Twilio's schema (an unknown verb, a child where none may be), if any."""
    for el in root:
        tag = el.tag
        if not isinstance(tag, str):
            continue
        if tag not in SIMULATED_VERBS | SKIPPED_VERBS | UNSIMULATED_VERBS:
            return f"<{tag}> is not a TwiML verb (verbs are case sensitive)"
        allowed: frozenset[str] | None = None
        if tag == "Gather":
            allowed = GATHER_CHILDREN
        elif tag == "Dial":
            allowed = DIAL_CHILDREN
        elif tag in CHILDLESS_VERBS:
            allowed = frozenset()
        if allowed is not None:
            for child in el:
                if isinstance(child.tag, str) and child.tag not in allowed:
                    return f"<{child.tag}> is not allowed inside <{tag}>"
    return None
