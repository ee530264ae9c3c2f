"""The staff console's notifications: the badge, the list, marking read, and failed deliveries for overseers.

Everyone sees their own console notifications. Heads SC-Operator and office admins also see the
deliveries (e-mail, SMS, LINE) that failed for good in their offices and the offices under them: heads
answer for call-backs being made, admins for staff addresses and the office's LINE group, and either can
act on a failure (fix an address, call the person). Others get 403.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from cases import notifications
from cases.models import Channel, Notification
from console.base import CONSOLE_BLUEPRINTS, clock, db, me, reader, require_login, safe_next, who
from console.i18n import N_, words
from infra.config import Config

bp = Blueprint("notifications", __name__, url_prefix="/console")
bp.before_request(require_login)

KIND_WORDS: dict[str, str] = {
    "before_due": N_("Call-back due soon"),
    "at_due": N_("Call-back due now"),
    "escalate_head": N_("Call-back overdue (to the head)"),
    "escalate_parent": N_("Call-back overdue (to the parent office)"),
    "no_recipient": N_("Call-back reminder with nobody to hear it (to the office above)"),
    "callback_retry": N_("Call-back to try again"),
    "callback_gave_up": N_("Call-back given up"),
    "follow_up_message": N_("Follow-up message"),
    "case_routed": N_("New case for your office"),
    "proposal_waiting": N_("Forwarding proposal waiting"),
    "proposal_approved": N_("Your proposal was approved"),
    "proposal_rejected": N_("Your proposal was rejected"),
    "case_assigned": N_("You were assigned a case"),
    "committee_assigned": N_("Your committee was assigned a case"),
    "case_reopened": N_("A case was reopened"),
}
CHANNEL_WORDS: dict[str, str] = {
    Channel.CONSOLE: N_("Console"),
    Channel.EMAIL: N_("E-mail"),
    Channel.SMS: N_("SMS"),
    Channel.LINE: N_("LINE group"),
}


def _mine_or_404(notification_id: int) -> Notification:
    found = db().get(Notification, notification_id)
    if found is None or found.user_id != me().id or found.channel != Channel.CONSOLE:
        abort(404)
    return found


def _console_path(link: str | None) -> str | None:
    """The console path of a stored link (absolute at our public URL, or a path); None for anything else."""
    if not link:
        return None
    cfg: Config = current_app.config["HOTLINE"]
    base = cfg.public_base_url.rstrip("/")
    if link.startswith(base + "/"):
        link = link[len(base) :]
    return safe_next(link)


@bp.get("/notifications")
def notifications_list() -> str:
    rows = notifications.my_notifications(db(), me())
    return render_template(
        "console/notifications.html",
        nav="notifications",
        rows=rows,
        paths={n.id: _console_path(n.link) for n in rows},
        now=clock(),
    )


@bp.post("/notifications/<int:notification_id>/read")
def read(notification_id: int) -> Response:
    found = _mine_or_404(notification_id)
    notifications.mark_read(db(), me(), clock(), found.id)
    db().commit()
    return redirect(url_for("notifications.notifications_list", _anchor=f"n-{found.id}"))


@bp.post("/notifications/<int:notification_id>/open")
def open_notification(notification_id: int) -> Response:
    """Mark it read and go where it points (a console page only)."""
    found = _mine_or_404(notification_id)
    notifications.mark_read(db(), me(), clock(), found.id)
    db().commit()
    return redirect(_console_path(found.link) or url_for("notifications.notifications_list"))


@bp.post("/notifications/read-all")
def read_all() -> Response:
    notifications.mark_read(db(), me(), clock())
    db().commit()
    return redirect(url_for("notifications.notifications_list"))


@bp.get("/notifications/failed")
def failed() -> str:
    rows = notifications.failed_deliveries(db(), me())
    if rows is None:
        abort(403)
    return render_template("console/notifications_failed.html", nav="failed", rows=rows, now=clock())


def _nav_counts() -> dict[str, Any]:
    """The unread badge for everyone, and the failed-deliveries count for heads and admins."""
    if request.blueprint not in CONSOLE_BLUEPRINTS or not current_user.is_authenticated:
        return {}
    user = who().user  # read-only, also on a POST that renders a page
    failed_count = notifications.failed_count(reader(), user)
    live = notifications.live_counts(reader(), user)
    return {
        "notifications_unread": live.unread,
        "notifications_latest": live.latest,  # console.live: the page notices a newer one
        "deliveries_failed": failed_count or 0,
        "sees_failed_deliveries": failed_count is not None,
    }


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.context_processor(_nav_counts)
    app.jinja_env.filters.update(
        notification_kind_words=lambda k: words(KIND_WORDS, k),
        channel_words=lambda c: words(CHANNEL_WORDS, str(c)),
    )
