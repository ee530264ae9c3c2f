"""Wire the whole console into the app: request plumbing, languages, sign-in, every area's pages, errors."""

from __future__ import annotations

from typing import Any

from flask import Flask, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from cases import phones, workflow
from cases.callbacks import dialing
from cases.staff import Role
from console import (
    audit,
    auth,
    base,
    calls,
    case_changes,
    cases,
    dashboard,
    i18n,
    ivr_path,
    live,
    notifications,
    offices,
    privacy,
    profile,
    search,
    subject,
    worker,
)
from console.base import CONSOLE_BLUEPRINTS, reader, who
from console.i18n import _
from infra.crypto import FieldCipher


def _nav_counts() -> dict[str, Any]:
    """The approvals badge in the header, for heads only (one query per page)."""
    if request.blueprint not in CONSOLE_BLUEPRINTS or not current_user.is_authenticated:
        return {}
    count = 0
    if who().has(Role.HEAD):  # read-only, also on a POST that renders a page
        count = len(workflow.proposals_awaiting(reader(), who().user))
    return {"approvals_waiting": count}


def _error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("console/error.html", status=status, message=message), status


def _on_csrf_error(exc: CSRFError) -> Any:
    if not request.path.startswith("/console"):
        return exc
    return _error_page(
        400,
        _("This form has expired or was not sent from the console. Go back, reload the page and try again."),
    )


def _not_found(exc: Exception) -> Any:
    if request.path.startswith("/console"):
        return _error_page(404, _("There is nothing here, or it is not yours to see."))
    return exc


def _forbidden(exc: Exception) -> Any:
    if request.path.startswith("/console"):
        return _error_page(403, _("This page is for the office's own staff."))
    return exc


def init_app(
    app: Flask,
    field_cipher: FieldCipher,
    dialer: dialing.Dialer,
    staff_phones: phones.PhoneSetup,
    limits: dialing.BridgeLimits,
) -> None:
    """The console on `app`; `dialer` rings staff phones for the call-back bridge (telephony's adapter),
    at most `limits` an hour, and only phones verified through `staff_phones` (codes sent by SMS)."""
    base.init_app(app, field_cipher)
    i18n.init_app(app)
    ivr_path.init_app(app)
    auth.init_app(app)
    app.register_blueprint(cases.bp)
    app.register_blueprint(offices.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(case_changes.bp)
    profile.init_app(app, staff_phones)
    notifications.init_app(app)
    live.init_app(app)
    worker.init_app(app)
    calls.init_app(app, dialer, limits)
    audit.init_app(app)
    subject.init_app(app)
    privacy.init_app(app)
    search.init_app(app)
    app.context_processor(_nav_counts)
    app.register_error_handler(CSRFError, _on_csrf_error)
    app.register_error_handler(404, _not_found)
    app.register_error_handler(403, _forbidden)
