"""Staff sign-in on the web: Flask-Login, session lifetimes, the login pages.

Passwords, the lockout count and session tokens are cases.accounts' (the shell uses them too); the
throttle by client address and account is cases.sign_in_limits', in the database, so every server
process counts the same failures. The client address is the real one behind a trusted proxy
(console.proxies).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user
from werkzeug.wrappers import Response

from cases.accounts import (
    LOCALES,
    LOCK_AFTER_FAILURES,
    LOCK_FOR,
    check_password,
    end_all_sessions,
    record_sign_in,
    set_locale,
)
from cases.sign_in_limits import address_blocked
from cases.staff import User
from console.base import CONSOLE_BLUEPRINTS, clock, db, me, reader, safe_next
from console.i18n import _
from infra.config import Config

log = logging.getLogger(__name__)

# Refreshing the idle clock on every request would rewrite the cookie on every response.
SEEN_RESOLUTION_S = 15

bp = Blueprint("auth", __name__, url_prefix="/console")


# ---- Flask-Login ------------------------------------------------------------------------------------


class LoginUser:
    """Flask-Login's view of a staff user; its id carries the session token, so rotating it logs out."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, user: User) -> None:
        self.user = user

    @property
    def is_active(self) -> bool:
        return self.user.active

    def get_id(self) -> str:
        return f"{self.user.id}:{self.user.session_token}"


def _load_user(user_id: str) -> LoginUser | None:
    uid, _sep, token = user_id.partition(":")
    if not uid.isdigit() or not token:
        return None
    user = reader().get(User, int(uid))  # on every request, POST too: it must not wait for the write lock
    if user is None or not user.active or not hmac.compare_digest(user.session_token, token):
        return None
    return LoginUser(user)


def _lifetimes() -> tuple[float, float]:
    cfg: Config = current_app.config["HOTLINE"]
    return cfg.session_idle_minutes * 60.0, cfg.session_max_hours * 3600.0


def _enforce_lifetimes() -> Response | None:
    """End a console session idle for too long, or older than the absolute limit."""
    if request.blueprint not in CONSOLE_BLUEPRINTS or request.endpoint == "console.static":
        return None
    if not current_user.is_authenticated:
        return None
    idle, absolute = _lifetimes()
    now = clock().timestamp()
    since, seen = session.get("since"), session.get("seen")
    if not isinstance(since, float | int) or not isinstance(seen, float | int):
        since = seen = 0.0  # a session from before lifetimes were kept: expired
    if now - since > absolute or now - seen > idle:
        logout_user()
        locale = session.get("locale")
        session.clear()
        if locale in LOCALES:
            session["locale"] = locale
        flash(_("Your session has ended. Please sign in again."), "info")
        return redirect(url_for("auth.login", next=request.path if request.method == "GET" else None))
    # A page's own polling (console.live) is not the person at work: it must not keep the session alive.
    if now - seen >= SEEN_RESOLUTION_S and request.endpoint != "live.counts":
        session["seen"] = now
    return None


def init_app(app: Flask) -> None:
    cfg: Config = app.config["HOTLINE"]
    manager = LoginManager()
    manager.user_loader(_load_user)
    manager.session_protection = "basic"
    manager.init_app(app)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=cfg.session_max_hours)
    app.before_request(_enforce_lifetimes)
    app.register_blueprint(bp)


# ---- the pages ----------------------------------------------------------------------------------------


def _failure_message() -> str:
    return _(
        "Sign-in failed. Check your username and password. After %(n)d failed attempts, sign-in to the "
        "account is paused for %(minutes)d minutes.",
        n=LOCK_AFTER_FAILURES,
        minutes=int(LOCK_FOR.total_seconds() // 60),
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    nxt = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(nxt or url_for("console.queue"))
        return render_template("console/login.html", next=nxt, error=None)

    address = request.remote_addr or "unknown"
    now = clock()
    if address_blocked(reader(), address, now):
        log.warning("sign-in throttled for a client address")
        return render_template("console/login.html", next=nxt, error=_failure_message()), 429
    username = request.form.get("username", "")[:80]
    password = request.form.get("password", "")[:1024]
    # scrypt runs on the read-only session; only the count waits for the write lock. An unknown name
    # waits its turn at the lock too, so that the time taken tells nobody whether a name exists.
    user = record_sign_in(db(), check_password(reader(), username, password), address=address, clock=clock)
    db().commit()
    if user is None:
        return render_template("console/login.html", next=nxt, error=_failure_message(), username=username)

    # A new session: nothing from before the sign-in (a planted cookie, an old CSRF token) survives.
    locale = session.get("locale")
    session.clear()
    login_user(LoginUser(user))
    session["sid"] = secrets.token_urlsafe(24)
    session["since"] = session["seen"] = now.timestamp()
    if locale in LOCALES:
        session["locale"] = locale
    session.permanent = True
    log.info("user id %d signed in", user.id)
    return redirect(nxt or url_for("console.queue"))


@bp.post("/logout")
def logout() -> Response:
    """Sign out: the cookie is emptied and the session token rotated, so no copy of it works again.

    The token is per user, so this ends the user's other sessions too; signed-cookie sessions cannot
    be revoked one by one without a server-side session store.
    """
    if current_user.is_authenticated:
        user = me()
        end_all_sessions(db(), user)
        db().commit()
        log.info("user id %d signed out", user.id)
    locale = session.get("locale")
    logout_user()
    session.clear()
    if locale in LOCALES:
        session["locale"] = locale
    flash(_("You have signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.post("/locale")
def switch_locale() -> Response:
    """The language toggle: kept in the session, and as the user's setting when signed in."""
    locale = request.form.get("locale", "")
    if locale in LOCALES:
        session["locale"] = locale
        if current_user.is_authenticated:
            set_locale(db(), me(), locale)
            db().commit()
    return redirect(safe_next(request.form.get("next")) or url_for("console.queue"))
