"""Twilio's webhooks: check the signature, call one service function, answer TwiML."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Flask, Response, abort, current_app, request, send_from_directory
from sqlalchemy.orm import Session

from infra.db import Database
from telephony import params, service, signature, twiml

log = logging.getLogger(__name__)
bp = Blueprint("twilio", __name__, url_prefix="/twilio")
TELEPHONY_KEY = "hotline.telephony"
DATABASE_KEY = "hotline.db"
AUDIO_DIR_KEY = "hotline.audio_dir"


def init_app(app: Flask, tel: service.Telephony, audio_dir: str) -> None:
    app.extensions[TELEPHONY_KEY] = tel
    app.extensions[AUDIO_DIR_KEY] = audio_dir
    app.register_blueprint(bp)


def _tel() -> service.Telephony:
    tel: service.Telephony = current_app.extensions[TELEPHONY_KEY]
    return tel


def _db() -> Database:
    db: Database = current_app.extensions[DATABASE_KEY]
    return db


@bp.before_request
def _check_signature() -> None:
    if request.endpoint == "twilio.audio":
        return  # prompts are public recordings fetched by <Play>; nothing personal
    cfg = current_app.config["HOTLINE"]
    url = signature.public_url(cfg.public_base_url, request.path, request.query_string.decode("latin-1"))
    form = request.form.to_dict() if request.method == "POST" else {}
    if not signature.is_valid(cfg.twilio_auth_token, url, form, request.headers.get("X-Twilio-Signature")):
        reason = "missing" if not request.headers.get("X-Twilio-Signature") else "invalid"
        log.warning("twilio signature %s: %s %s refused", reason, request.method, request.path)
        abort(403)


def _xml(body: str) -> Response:
    return Response(body, status=200, mimetype="text/xml")


def _answer(work: Callable[[Session], str], *, on_failure: Callable[[], str] | None = None) -> Response:
    """Run one service call in one transaction; a caller on the line never gets a 500 from us."""
    tel = _tel()
    form = request.form.to_dict()
    try:
        with _db().writing() as session:
            body = work(session)
    except params.BadRequest as exc:
        log.warning("malformed %s webhook: %s", request.path, exc)
        body = (
            on_failure()
            if on_failure
            else twiml.render_rescue(tel.flow.rescue, tel.flow.default_language, tel.voices)
        )
    except Exception:
        log.exception("%s failed for call %s", request.path, _sid(form.get("CallSid")))
        body = (
            on_failure()
            if on_failure
            else twiml.render_rescue(tel.flow.rescue, tel.flow.default_language, tel.voices)
        )
    return _xml(body)


def _sid(raw: str | None) -> str:
    return raw if raw and params.CALL_SID.match(raw) else "<invalid CallSid>"


@bp.post("/voice")
def voice() -> Response:
    tel = _tel()
    return _answer(lambda s: service.incoming_call(s, tel, request.form.to_dict()))


@bp.post("/ivr")
def ivr() -> Response:
    tel = _tel()
    seq, kind = request.args.get("seq", ""), request.args.get("ev", "")
    return _answer(lambda s: service.caller_action(s, tel, request.form.to_dict(), seq, kind))


@bp.post("/rescue-recording")
def rescue_recording() -> Response:
    tel = _tel()
    form = request.form.to_dict()

    def spool() -> str:
        service.spool_rescue(tel.spool_dir, form)
        return twiml.render_thanks(tel.flow.rescue, tel.flow.default_language, tel.voices)

    return _answer(lambda s: service.rescue_recording(s, tel, form), on_failure=spool)


def _callback(work: Callable[[Session], None]) -> Response:
    """Status callbacks: Twilio ignores the body, but a failure must still be visible to Twilio."""
    try:
        with _db().writing() as session:
            work(session)
    except params.BadRequest as exc:
        log.warning("malformed %s callback: %s", request.path, exc)
        return _xml(twiml.empty())
    except Exception:
        log.exception("%s failed", request.path)
        # Not a caller on the line: a 500 lets Twilio's debugger (and any retry) see the failure.
        return Response(twiml.empty(), status=500, mimetype="text/xml")
    return _xml(twiml.empty())


@bp.post("/status")
def status() -> Response:
    tel = _tel()
    return _callback(lambda s: service.call_status(s, tel, request.form.to_dict()))


@bp.post("/recording-status")
def recording_status() -> Response:
    tel = _tel()
    return _callback(lambda s: service.recording_status(s, tel, request.form.to_dict()))


@bp.get("/audio/<path:name>")
def audio(name: str) -> Response:
    return send_from_directory(current_app.extensions[AUDIO_DIR_KEY], name, max_age=3600)
