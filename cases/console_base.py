"""What every console request shares: its database session, clock, signed-in user and response headers."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, NoReturn

from flask import Flask, Response, abort, current_app, g, redirect, request, url_for
from flask_login import current_user
from sqlalchemy.orm import Session

from cases import queries, workflow
from cases.models import Case
from cases.staff import User
from cases.workflow import WhoAmI, who_am_i
from infra.clock import utcnow
from infra.crypto import FieldCipher
from infra.db import Database

# Set by app.py (telephony's webhooks put the Database under the same key; cases does not import them).
DATABASE_KEY = "hotline.db"
CIPHER_KEY = "hotline.cipher"
# Tests replace it to move time forward (idle and absolute session timeouts, case ages).
CLOCK_KEY = "hotline.clock"
CONSOLE_BLUEPRINTS = frozenset({"auth", "console", "offices", "notifications", "calls", "worker"})

# Pages show a reporter's words and sometimes their number: nothing may be kept by a browser or proxy.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def db() -> Session:
    """The request's session (opened on first use, closed when the request ends; views commit)."""
    session: Session | None = g.get("hotline_db")
    if session is None:
        database: Database = current_app.extensions[DATABASE_KEY]
        session = database.sessions()
        g.hotline_db = session
    return session


def _close_db(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("hotline_db", None)
    if session is not None:
        session.close()


def clock() -> datetime:
    now: datetime = current_app.extensions.get(CLOCK_KEY, utcnow)()
    return now


def cipher() -> FieldCipher:
    value: FieldCipher = current_app.extensions[CIPHER_KEY]
    return value


def me() -> User:
    user: User = current_user.user
    return user


def who() -> WhoAmI:
    """The signed-in user's offices and roles, computed once per request."""
    cached: WhoAmI | None = g.get("hotline_who")
    if cached is None:
        cached = who_am_i(db(), me())
        g.hotline_who = cached
    return cached


def safe_next(value: str | None) -> str | None:
    """A console path to return to after a form; anything else (another host, `//x`) is dropped."""
    if not value or not value.startswith("/console") or value.startswith("//") or "\\" in value:
        return None
    return value


def require_login() -> Any:
    """before_request of the console blueprints: a signed-out visitor goes to the sign-in page."""
    if request.endpoint and request.endpoint.endswith(".static"):
        return None
    if not current_user.is_authenticated:
        nxt = request.path if request.method == "GET" else None
        return redirect(url_for("auth.login", next=nxt))
    return None


def _headers(response: Response) -> Response:
    if request.blueprint in CONSOLE_BLUEPRINTS and not (request.endpoint or "").endswith(".static"):
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
    return response


def init_app(app: Flask, field_cipher: FieldCipher) -> None:
    app.extensions[CIPHER_KEY] = field_cipher
    app.extensions.setdefault(CLOCK_KEY, utcnow)
    app.teardown_appcontext(_close_db)
    app.after_request(_headers)


def refuse(what: str, object_id: int) -> NoReturn:
    """Not found, or not the user's to see: the same 404 either way, and an audit row."""
    workflow.audit_refused_access(db(), me(), what, object_id)
    db().commit()
    logging.getLogger(__name__).info("refused %s %d to user id %d", what, object_id, me().id)
    abort(404)


def case_or_404(case_id: int) -> Case:
    """The case if the user may see it; otherwise refuse() it."""
    case = queries.visible_case(db(), me(), case_id)
    if case is None:
        refuse("case", case_id)
    return case
