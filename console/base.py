"""What every console request shares: its database sessions, clock, signed-in user and response headers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from typing import Any, NoReturn

from flask import Flask, Response, abort, current_app, flash, g, redirect, request, url_for
from flask_login import current_user
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WerkzeugResponse

from cases import workflow
from cases.access import WhoAmI, who_am_i
from cases.models import Case
from cases.staff import User
from cases.texts import Refusal
from console import queries
from console.i18n import error_text
from infra import db as infra_db
from infra.clock import Clock, utcnow
from infra.crypto import FieldCipher
from infra.db import Database
from infra.extensions import Shared

field_cipher: Shared[FieldCipher] = Shared("hotline.cipher")
# Tests install another to move time forward (idle and absolute session timeouts, case ages).
console_clock: Shared[Clock] = Shared("hotline.clock", default=utcnow)
CONSOLE_BLUEPRINTS = frozenset(
    {
        *("auth", "console", "offices", "notifications", "calls", "profile", "worker", "audit"),
        *("subject", "privacy", "live", "search", "dashboard", "changes"),
    }
)
# Requests that change nothing: their views read through the read-only session only (see db()).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_READER, _WRITER = "hotline_reader", "hotline_writer"

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


def database() -> Database:
    return infra_db.database(current_app)


def reader() -> Session:
    """The request's read-only session: one snapshot, never the write lock (closed when the request ends).

    The signed-in user is loaded here, and the pages and their badges read here, whatever the method.
    """
    session: Session | None = g.get(_READER)
    if session is None:
        session = database().read_session()
        g.setdefault(_READER, session)
    return session


def db() -> Session:
    """The session a view works in: the reader on GET; on POST, the request's one write transaction.

    A POST's transaction is entered on first use, through Database.writing() (on SQLite its turn at the
    write lock), and left when the request ends: what the view did not commit is rolled back. Views and
    service functions therefore flush, and the view commits once, as before.
    """
    if request.method in READ_METHODS:
        return reader()
    entry: tuple[ExitStack, Session] | None = g.get(_WRITER)
    if entry is None:
        stack = ExitStack()
        entry = (stack, stack.enter_context(database().writing()))
        g.setdefault(_WRITER, entry)
    return entry[1]


def end_writes() -> None:
    """Commit the request's write transaction and leave it (before a network call): the lock is free.

    Objects read in it are detached; keep ids. A later db() enters a new write transaction.
    """
    entry: tuple[ExitStack, Session] | None = g.pop(_WRITER, None)
    if entry is not None:
        entry[0].close()  # writing() commits


def _close_db(exc: BaseException | None) -> None:
    entry: tuple[ExitStack, Session] | None = g.pop(_WRITER, None)
    if entry is not None:
        stack, session = entry
        try:
            session.rollback()  # only what the view committed is kept, as with a plain session
        finally:
            stack.close()
    read: Session | None = g.pop(_READER, None)
    if read is not None:
        read.close()


def clock() -> datetime:
    return console_clock(current_app)()


def cipher() -> FieldCipher:
    return field_cipher(current_app)


def me() -> User:
    """The signed-in user as db() sees it (on POST, the write transaction's copy: service functions
    may change it or link rows to it)."""
    user: User = current_user.user
    session = db()
    if user in session:
        return user
    mine = session.get(User, user.id)
    if mine is None:  # removed since the request began: nothing of theirs to do
        abort(403)
    return mine


def who() -> WhoAmI:
    """The signed-in user's offices and roles, read once per request (what pages and badges show)."""
    cached: WhoAmI | None = g.get("hotline_who")
    if cached is None:
        cached = who_am_i(reader(), current_user.user)
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


def init_app(app: Flask, the_cipher: FieldCipher) -> None:
    field_cipher.install(app, the_cipher)
    app.teardown_appcontext(_close_db)
    app.after_request(_headers)


def apply(
    back: str,
    work: Callable[[], object],
    done: str | Callable[[object], str],
    *,
    after_refusal: Callable[[Refusal], None] | None = None,
) -> WerkzeugResponse:
    """Run one service call in the request's write transaction; a refusal becomes a message, not a change.

    `done` is the message, or makes it from what the work returned. `after_refusal` writes what a refusal
    leaves on record (an audit row), in a transaction of its own after the rollback. Then back to the
    form's page: `back`, or the console page the form named in `next`.
    """
    try:
        given = work()
        db().commit()
    except Refusal as exc:
        db().rollback()
        if after_refusal is not None:
            after_refusal(exc)
            db().commit()
        flash(error_text(exc), "error")
    else:
        flash(done(given) if callable(done) else done, "ok")
    return redirect(safe_next(request.form.get("next")) or back)


def refuse(what: str, object_id: int) -> NoReturn:
    """Not found, or not the user's to see: the same 404 either way, and an audit row.

    On GET the row is the request's only write: one short transaction of its own, after the reads.
    """
    user_id = current_user.user.id
    if request.method in READ_METHODS:
        with database().writing() as session:
            workflow.audit_refused_access(session, session.get(User, user_id), what, object_id)
    else:
        workflow.audit_refused_access(db(), me(), what, object_id)
        db().commit()
    logging.getLogger(__name__).info("refused %s %d to user id %d", what, object_id, user_id)
    abort(404)


def case_or_404(case_id: int) -> Case:
    """The case if the user may see it; otherwise refuse() it."""
    case = queries.visible_case(db(), me(), case_id)
    if case is None:
        refuse("case", case_id)
    return case
