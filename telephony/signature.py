"""Checking X-Twilio-Signature against the URL Twilio called, rebuilt from PUBLIC_BASE_URL."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import abort, current_app, request
from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)


def public_url(public_base_url: str, path: str, query_string: str) -> str:
    """The URL as Twilio saw it: behind a TLS-terminating proxy request.url is not that URL."""
    return public_base_url.rstrip("/") + path + (f"?{query_string}" if query_string else "")


def is_valid(auth_token: str, url: str, form: Mapping[str, str], signature: str | None) -> bool:
    if not signature or not auth_token:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(form), signature))


def check_request() -> None:
    """before_request of every Twilio webhook blueprint: 403 unless the request is signed by our account."""
    cfg = current_app.config["HOTLINE"]
    url = public_url(cfg.public_base_url, request.path, request.query_string.decode("latin-1"))
    form = request.form.to_dict() if request.method == "POST" else {}
    if not is_valid(cfg.twilio_auth_token, url, form, request.headers.get("X-Twilio-Signature")):
        reason = "missing" if not request.headers.get("X-Twilio-Signature") else "invalid"
        log.warning("twilio signature %s: %s %s refused", reason, request.method, request.path)
        abort(403)
