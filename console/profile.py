"""The signed-in user's own page: their phone, which the call-back bridge rings and SMS reminders reach."""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from cases import accounts
from console.base import db, me, require_login
from console.i18n import _

log = logging.getLogger(__name__)
bp = Blueprint("profile", __name__, url_prefix="/console")
bp.before_request(require_login)


@bp.route("/me", methods=["GET", "POST"])
def profile() -> Response | str:
    """The user's own phone: the call-back bridge rings it, and SMS reminders go to it."""
    if request.method == "POST":
        try:
            accounts.set_phone(db(), me(), request.form.get("phone", "")[:40])
        except accounts.AccountError:
            db().rollback()
            flash(_("That is not a phone number. Write it like 081 234 5678 or +66812345678."), "error")
        else:
            db().commit()
            log.info("user id %d changed their phone", me().id)
            saved = _("Your phone number was saved.") if me().phone else _("Your phone number was removed.")
            flash(saved, "ok")
        return redirect(url_for("profile.profile"))
    return render_template("console/profile.html", nav="profile", user=me())
