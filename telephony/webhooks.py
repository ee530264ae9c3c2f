"""Twilio's webhooks: check the signature, call one service function, answer TwiML."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Blueprint, Flask, Response, current_app, request, send_from_directory
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from infra.db import Database, database
from infra.deadline import Breaker, deadline
from infra.extensions import Shared
from telephony import params, service, signature, spool, twiml

log = logging.getLogger(__name__)
bp = Blueprint("twilio", __name__, url_prefix="/twilio")
telephony: Shared[service.Telephony] = Shared("hotline.telephony")
db_breaker: Shared[Breaker] = Shared("hotline.db_breaker")
prompt_audio_dir: Shared[str] = Shared("hotline.audio_dir")


def init_app(app: Flask, tel: service.Telephony, audio_dir: str) -> None:
    telephony.install(app, tel)
    db_breaker.install(app, Breaker())
    prompt_audio_dir.install(app, audio_dir)
    app.register_blueprint(bp)


def _tel() -> service.Telephony:
    return telephony(current_app)


def _db() -> Database:
    return database(current_app)


@contextmanager
def _database_work(tel: service.Telephony) -> Iterator[None]:
    """The budget of one webhook's database work; a miss makes the next webhooks try only briefly."""
    breaker = db_breaker(current_app)
    try:
        with deadline(breaker.budget(tel.db_budget_s)):
            yield
    except (DBAPIError, TimeoutError):  # locked, stalled, gone, or out of time (DeadlineExceeded)
        breaker.missed()
        raise
    breaker.answered()


@bp.before_request
def _check_signature() -> None:
    if request.endpoint == "twilio.audio":
        return  # prompts are public recordings fetched by <Play>; nothing personal
    signature.check_request()


def _xml(body: str) -> Response:
    return Response(body, status=200, mimetype="text/xml")


def _answer(
    work: Callable[[Session], str],
    *,
    prepare: Callable[[Connection], str | service.Prepared | None] | None = None,
    on_failure: Callable[[], str] | None = None,
) -> Response:
    """Run one service call in one transaction; a caller on the line never gets a 500 from us.

    With `prepare`, the step is first worked out from a read outside the write lock and saved by a short
    guarded write; `work` runs under the lock only when that cannot answer (see _prepared). All of the
    database work shares one budget (Telephony.db_budget_s), well inside Twilio's 15 s: a database that
    is locked, stalled or gone makes the caller hear `on_failure`'s answer (by default the rescue prompt,
    which takes a message) instead of Twilio's error and a dropped call.
    """
    tel = _tel()
    form = request.form.to_dict()
    try:
        with _database_work(tel):
            body = _prepared(prepare) if prepare else None
            if body is None:
                with _db().writing() as session:
                    body = work(session)
    except params.BadRequest as exc:
        log.warning("malformed %s webhook: %s", request.path, exc)
        body = on_failure() if on_failure else _rescue(tel)
    except Exception:
        log.exception("%s failed for call %s", request.path, _sid(form.get("CallSid")))
        body = on_failure() if on_failure else _rescue(tel)
    return _xml(body)


def _rescue(tel: service.Telephony) -> str:
    return twiml.render_rescue(tel.flow.rescue, tel.flow.default_language, tel.voices)


def _keep_message(tel: service.Telephony, form: dict[str, str]) -> str | None:
    """The thanks for a message kept in the spool, or None if the request carried no message."""
    rec = params.recording(form)
    if rec is None or rec.duration_s == 0:
        return None
    # Kept on disk, or (if even the disk failed) still at Twilio, where the reconcile sweep finds it:
    # either way the caller has left their message and is thanked for it.
    spool.keep(tel, spool.MESSAGE, form)
    return twiml.render_thanks(tel.flow.rescue, tel.flow.default_language, tel.voices)


def _prepared(prepare: Callable[[Connection], str | service.Prepared | None]) -> str | None:
    """The answer of a step prepared outside the write lock, or None to run the request under it.

    SQLite has one writer: a webhook that held the lock while it read, ran the engine, rendered and
    encrypted kept every other webhook waiting (capacity ~ 1 / time under the lock). Only the guarded
    UPDATE and the inserts run under it now.
    """
    db = _db()
    with db.reading() as conn:
        prepared = prepare(conn)
    if prepared is None or isinstance(prepared, str):
        return prepared
    with db.writing() as session:
        saved = service.save_prepared(session, prepared)
    # Not saved: a twin of this request (or another write) changed the call first; the locked path answers.
    return prepared.body if saved else None


def _sid(raw: str | None) -> str:
    return raw if raw and params.CALL_SID.match(raw) else "<invalid CallSid>"


@bp.post("/voice")
def voice() -> Response:
    tel = _tel()
    form = request.form.to_dict()
    return _answer(
        lambda s: service.incoming_call(s, tel, form),
        prepare=lambda c: service.prepare_incoming_call(c, tel, form),
    )


@bp.post("/ivr")
def ivr() -> Response:
    tel = _tel()
    seq, kind, form = request.args.get("seq", ""), request.args.get("ev", ""), request.form.to_dict()
    return _answer(
        lambda s: service.caller_action(s, tel, form, seq, kind),
        prepare=lambda c: service.prepare_caller_action(c, tel, form, seq, kind),
        # The <Record> action carries the caller's message: kept in the spool, never asked for again.
        on_failure=lambda: _keep_message(tel, form) or _rescue(tel),
    )


@bp.post("/rescue-recording")
def rescue_recording() -> Response:
    tel = _tel()
    form = request.form.to_dict()

    def thanks() -> str:
        return _keep_message(tel, form) or twiml.render_thanks(
            tel.flow.rescue, tel.flow.default_language, tel.voices
        )

    return _answer(lambda s: service.rescue_recording(s, tel, form), on_failure=thanks)


def _callback(work: Callable[[Session], None], kind: str) -> Response:
    """Status callbacks: what they say is applied, or kept in the spool when the database cannot take it.

    Twilio does not retry them by default, so a failure is answered 200 only once the spool holds the
    request; otherwise a 500 lets Twilio's debugger see it (and the reconcile sweep mends it later).
    """
    tel = _tel()
    form = request.form.to_dict()
    try:
        with _database_work(tel), _db().writing() as session:
            work(session)
    except params.BadRequest as exc:
        log.warning("malformed %s callback: %s", request.path, exc)
        return _xml(twiml.empty())
    except Exception:
        log.exception("%s failed for call %s", request.path, _sid(form.get("CallSid")))
        if spool.keep(tel, kind, form) is not None:
            return _xml(twiml.empty())
        return Response(twiml.empty(), status=500, mimetype="text/xml")
    return _xml(twiml.empty())


@bp.post("/status")
def status() -> Response:
    tel = _tel()
    return _callback(lambda s: service.call_status(s, tel, request.form.to_dict()), spool.CALL_STATUS)


@bp.post("/recording-status")
def recording_status() -> Response:
    tel = _tel()
    return _callback(
        lambda s: service.recording_status(s, tel, request.form.to_dict()), spool.RECORDING_STATUS
    )


@bp.get("/audio/<path:name>")
def audio(name: str) -> Response:
    return send_from_directory(prompt_audio_dir(current_app), name, max_age=3600)
