"""The console's live counts: a small JSON answer that console/static/live.js polls to update the badge.

The answer holds the signed-in user's own counts only (their unread console notifications and the newest
one's id), read in one indexed query. Polling does not count as activity: a tab left open still ends at the
idle timeout (console.auth skips the idle clock for this endpoint).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify
from flask_login import current_user
from werkzeug.wrappers import Response

from cases import notifications
from console.base import reader
from console.i18n import _, digits

# How often an open console page asks (seconds). Short enough that a routed case shows within the
# minute, long enough that a hundred open tabs cost a few queries a second.
POLL_SECONDS = 20

bp = Blueprint("live", __name__, url_prefix="/console")


@bp.before_request
def _signed_in_only() -> Any:
    """A script asks here, not a person: a signed-out request gets 401, not the sign-in page."""
    if not current_user.is_authenticated:
        return jsonify(error="signed out"), 401
    return None


@bp.get("/live")
def counts() -> Response:
    # The user Flask-Login loaded (one query by primary key), and the one count query: nothing more.
    found = notifications.live_counts(reader(), current_user.user)
    # The badge's spoken label comes along, in the user's language, as base.html writes it.
    label = digits(_("%(n)d unread", n=found.unread))
    # The badge's text in the console's digits (HOTLINE_CONSOLE_DIGITS), as the page drew it.
    text = digits(found.unread)
    return jsonify(unread=found.unread, latest=found.latest, unread_label=label, unread_text=text)


def poll_settings() -> dict[str, Any]:
    """What base.html gives live.js: the interval (a template reads the constant at render time)."""
    return {"live_poll_seconds": POLL_SECONDS}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.context_processor(poll_settings)
