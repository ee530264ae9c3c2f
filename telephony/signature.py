"""Checking X-Twilio-Signature against the URL Twilio called, rebuilt from PUBLIC_BASE_URL."""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator


def public_url(public_base_url: str, path: str, query_string: str) -> str:
    """The URL as Twilio saw it: behind a TLS-terminating proxy request.url is not that URL."""
    return public_base_url.rstrip("/") + path + (f"?{query_string}" if query_string else "")


def is_valid(auth_token: str, url: str, form: Mapping[str, str], signature: str | None) -> bool:
    if not signature or not auth_token:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(form), signature))
