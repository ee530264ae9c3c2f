"""The console's privacy page for office admins: what is kept, how long, the next and last purge, holds."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, current_app, render_template, request
from flask_login import current_user

from cases.retention import KINDS
from cases.retention.privacy import privacy_overview
from cases.retention.settings import retention_settings
from cases.staff import Role
from console.base import CONSOLE_BLUEPRINTS, clock, db, me, require_login, who
from console.i18n import N_, _, words
from infra.config import Config

bp = Blueprint("privacy", __name__, url_prefix="/console")
bp.before_request(require_login)

# What each kind of data is and when retention erases it (README "Retention"), filled with its days.
RULE_WORDS: dict[str, str] = {
    "caller_numbers": N_("Reporter's number: erased %(days)d days after the callback is closed"),
    "recordings": N_(
        "Recordings and machine transcripts: erased %(days)d days after the case is resolved, once a "
        "summary or a staff-corrected transcript exists"
    ),
    "call_events": N_("The caller's path through the phone menu: erased %(days)d days after the call"),
    "notifications": N_(
        "Notifications and their delivery attempts: erased %(days)d days after they were made, once "
        "delivered or failed"
    ),
    "audit": N_("Audit trail (who opened, played or revealed what): erased %(days)d days after each entry"),
    "drafts": N_(
        "Drafts never routed to an office: their number, recordings, transcripts and menu path erased "
        "%(days)d days after the call; the case and its reference stay"
    ),
    "caseless_recordings": N_("Recordings that no case holds: erased %(days)d days after the call"),
}
# The last purge's counts (cases.retention.sweep.RetentionSweep.sweep), by kind.
COUNT_WORDS: dict[str, str] = {
    "drafts": N_("Drafts"),
    "caller_numbers": N_("Reporters' numbers"),
    "recordings": N_("Recordings"),
    "call_events": N_("Paths through the phone menu"),
    "notifications": N_("Notifications"),
    "audit": N_("Audit trail entries"),
    "files": N_("Recording files removed"),
    "twilio_copies": N_("Copies deleted at the telephone provider"),
}
COUNTED = (*KINDS, "files", "twilio_copies")


def _rules() -> list[str]:
    settings = retention_settings(current_app)
    days = {kind: settings.days(kind) for kind in KINDS}
    days["caseless_recordings"] = settings.drafts  # cases.retention.rules.due_caseless_recordings
    return [_(RULE_WORDS[kind], days=n) for kind, n in days.items()]


@bp.get("/privacy")
def privacy() -> str:
    cfg: Config = current_app.config["HOTLINE"]
    overview = privacy_overview(db(), me(), retention_settings(current_app), clock(), cfg.timezone)
    if overview is None:
        abort(403)
    counts = overview.last_run.counts if overview.last_run else {}
    return render_template(
        "console/privacy.html",
        nav="privacy",
        o=overview,
        rules=_rules(),
        counts=[(words(COUNT_WORDS, kind), counts.get(kind, 0)) for kind in COUNTED],
    )


def _nav() -> dict[str, Any]:
    """The privacy link, for office admins only."""
    if request.blueprint not in CONSOLE_BLUEPRINTS or not current_user.is_authenticated:
        return {}
    return {"sees_privacy": who().has(Role.ADMIN)}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.context_processor(_nav)
