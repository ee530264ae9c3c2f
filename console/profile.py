"""The signed-in user's own page: their phone, verified by a code sent to it (cases.phones).

The call-back bridge rings that phone and SMS reminders reach it, so a number is saved only when the code
sent to it is keyed back: enter the number, get the code by SMS, key it in. Each step is a POST with CSRF.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from cases import phones
from console.base import clock, db, end_writes, me, reader, require_login
from console.i18n import _, error_text
from infra.extensions import Shared

log = logging.getLogger(__name__)
bp = Blueprint("profile", __name__, url_prefix="/console")
bp.before_request(require_login)
staff_phones: Shared[phones.PhoneSetup] = Shared("hotline.phones")


def phone_setup() -> phones.PhoneSetup:
    return staff_phones(current_app)


def _back() -> Response:
    return redirect(url_for("profile.profile"))


@bp.get("/me")
def profile() -> str:
    """The user's phone, whether it is verified, and the code waiting to be keyed back."""
    user = current_user.user  # read in the reader: a page takes no write lock
    waiting = phones.pending(reader(), user, clock())
    return render_template(
        "console/profile.html",
        nav="profile",
        user=user,
        verified=phones.verified_phone(user, phone_setup().policy) is not None,
        waiting=waiting,
        code_minutes=phone_setup().policy.code_minutes,
    )


@bp.post("/me/phone")
def request_code() -> Response:
    """A new number: check it, and send a code to it. Nothing changes until the code comes back."""
    setup = phone_setup()
    try:
        sending = phones.request_code(db(), setup, me(), request.form.get("phone", "")[:40], clock())
        db().commit()
    except phones.PhoneError as exc:
        db().commit()  # a refused number is audited
        flash(error_text(exc), "error")
        return _back()
    end_writes()  # Twilio is asked with the write lock free
    try:
        phones.send_code(setup, sending)
    except phones.PhoneError as exc:
        phones.code_not_sent(db(), sending.verification_id, clock())
        db().commit()
        flash(error_text(exc), "error")
        return _back()
    log.info("user id %d asked for a phone code (verification %d)", me().id, sending.verification_id)
    flash(_("A code was sent to the number by SMS. Key it in below."), "ok")
    return _back()


@bp.post("/me/phone/code")
def confirm_code() -> Response:
    """The code keyed back: the number becomes the user's phone. A wrong code counts a try."""
    try:
        phones.confirm_code(db(), phone_setup(), me(), request.form.get("code", "")[:20], clock())
    except phones.PhoneError as exc:
        db().commit()  # the try counts, and is audited
        flash(error_text(exc), "error")
        return _back()
    db().commit()
    flash(_("Your phone number is verified and saved."), "ok")
    return _back()


@bp.post("/me/phone/cancel")
def cancel_code() -> Response:
    phones.cancel_code(db(), me(), clock())
    db().commit()
    return _back()


@bp.post("/me/phone/remove")
def remove_phone() -> Response:
    phones.remove_phone(db(), me(), clock(), actor_id=me().id)
    db().commit()
    log.info("user id %d removed their phone", me().id)
    flash(_("Your phone number was removed."), "ok")
    return _back()


def init_app(app: Flask, setup: phones.PhoneSetup) -> None:
    staff_phones.install(app, setup)
    app.register_blueprint(bp)
