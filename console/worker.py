"""The console's page of worker faults for office admins: recordings and transcripts failing or stuck."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, render_template, request
from flask_login import current_user

from cases import worker_faults
from console.base import CONSOLE_BLUEPRINTS, clock, db, me, require_login
from console.i18n import N_, words

bp = Blueprint("worker", __name__, url_prefix="/console")
bp.before_request(require_login)

STATE_WORDS: dict[str, str] = {
    worker_faults.FaultState.RETRYING: N_("Failing: the worker tries again by itself"),
    worker_faults.FaultState.GAVE_UP: N_("Given up: the worker tries no more"),
    worker_faults.FaultState.STUCK: N_("Stuck: the worker doing it stopped"),
    worker_faults.FaultState.UNTOUCHED: N_("Waiting: no worker has taken it"),
}
KIND_WORDS: dict[str, str] = {
    "recording": N_("Recording"),
    "transcript": N_("Machine transcript"),
}


@bp.get("/worker")
def faults() -> str:
    rows = worker_faults.worker_faults(db(), me(), clock())
    if rows is None:
        abort(403)
    return render_template("console/worker.html", nav="worker", rows=rows, now=clock())


def _nav_counts() -> dict[str, Any]:
    """The worker-faults link and its count, for office admins only."""
    if request.blueprint not in CONSOLE_BLUEPRINTS or not current_user.is_authenticated:
        return {}
    count = worker_faults.worker_fault_count(db(), me(), clock())
    return {"sees_worker_faults": count is not None, "worker_faults": count or 0}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.context_processor(_nav_counts)
    app.jinja_env.filters.update(
        worker_state_words=lambda s: words(STATE_WORDS, str(s)),
        worker_kind_words=lambda k: words(KIND_WORDS, k),
    )
