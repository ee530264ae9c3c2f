"""The call-back bridge's Twilio webhooks, signed like every Twilio webhook: /twilio/bridge/<attempt>/…"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Flask, Response, current_app, request
from sqlalchemy.orm import Session

from infra.config import Config
from infra.db import Database, database
from infra.deadline import deadline
from infra.extensions import Shared
from telephony import bridge, params, signature, twiml

log = logging.getLogger(__name__)
bp = Blueprint("twilio_bridge", __name__, url_prefix=bridge.PREFIX)
bp.before_request(signature.check_request)
call_bridge: Shared[bridge.Bridge] = Shared("hotline.bridge")


def init_app(app: Flask, the_bridge: bridge.Bridge) -> None:
    call_bridge.install(app, the_bridge)
    app.register_blueprint(bp)


def _bridge() -> bridge.Bridge:
    return call_bridge(current_app)


def _db() -> Database:
    return database(current_app)


def _budget() -> float:
    cfg: Config = current_app.config["HOTLINE"]
    return cfg.webhook_db_budget_s


def _xml(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/xml")


def _live(work: Callable[[Session], str]) -> Response:
    """A person is on the line: whatever fails, they hear a sentence and the call ends; never a 500."""
    try:
        with deadline(_budget()), _db().writing() as session:
            return _xml(work(session))
    except params.BadRequest as exc:
        log.warning("malformed %s webhook: %s", request.path, exc)
    except Exception:
        log.exception("%s failed", request.path)
    return _xml(bridge.render_error(_bridge()))


def _status(work: Callable[[Session], None]) -> Response:
    """Status callbacks: Twilio ignores the body; a failure answers 500 so Twilio's debugger shows it."""
    try:
        with deadline(_budget()), _db().writing() as session:
            work(session)
    except params.BadRequest as exc:
        log.warning("malformed %s callback: %s", request.path, exc)
    except Exception:
        log.exception("%s failed", request.path)
        return _xml(twiml.empty(), 500)
    return _xml(twiml.empty())


@bp.post(f"/<int:attempt_id>/{bridge.ANSWER}")
def answer(attempt_id: int) -> Response:
    form = request.form.to_dict()
    return _live(lambda s: bridge.operator_answered(s, _bridge(), attempt_id, form))


@bp.post(f"/<int:attempt_id>/{bridge.DIAL}")
def dial(attempt_id: int) -> Response:
    form = request.form.to_dict()
    return _live(lambda s: bridge.dial_ended(s, _bridge(), attempt_id, form))


@bp.post(f"/<int:attempt_id>/{bridge.OPERATOR_STATUS}")
def operator_status(attempt_id: int) -> Response:
    form = request.form.to_dict()
    return _status(lambda s: bridge.operator_status(s, _bridge(), attempt_id, form))


@bp.post(f"/<int:attempt_id>/{bridge.REPORTER_STATUS}")
def reporter_status(attempt_id: int) -> Response:
    form = request.form.to_dict()
    return _status(lambda s: bridge.reporter_status(s, _bridge(), attempt_id, form))


@bp.post(f"/<int:attempt_id>/{bridge.AMD}")
def amd(attempt_id: int) -> Response:
    form = request.form.to_dict()
    return _status(lambda s: bridge.amd_result(s, _bridge(), attempt_id, form))
