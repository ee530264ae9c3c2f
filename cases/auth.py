"""Staff sign-in: scrypt password hashes, lockout after failures, session lifetimes, the login pages."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
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
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from cases.console_base import CONSOLE_BLUEPRINTS, clock, db, me, reader, safe_next
from cases.i18n import LOCALES, _
from cases.staff import AuditEvent, User
from infra.clock import Clock, utcnow
from infra.config import Config, e164

log = logging.getLogger(__name__)

LOCK_AFTER_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
# Per client address, across usernames: slows a spray over many accounts that stays under 5 each.
IP_MAX_FAILURES = 20
IP_WINDOW_S = 15 * 60
MIN_PASSWORD_LENGTH = 10
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,79}$")
THROTTLE_KEY = "hotline.login_throttle"
# Refreshing the idle clock on every request would rewrite the cookie on every response.
SEEN_RESOLUTION_S = 15

bp = Blueprint("auth", __name__, url_prefix="/console")


class AccountError(ValueError):
    """A user account cannot be created or changed as asked (shell commands show the message)."""


# ---- accounts ---------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """werkzeug's scrypt (n=2**15, r=8, p=1) with a random salt."""
    return generate_password_hash(password, method="scrypt")


@cache
def _dummy_hash() -> str:
    # Checked against when the username is unknown, so an unknown name costs as much time as a known one.
    return hash_password(secrets.token_hex(16))


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


def create_user(
    session: Session,
    username: str,
    display_name: str,
    password: str,
    *,
    locale: str = "th",
    email: str | None = None,
    phone: str | None = None,
    clock: Clock = utcnow,
) -> User:
    """Create a staff account (no roles yet). Flushes, never commits."""
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise AccountError("a username is 3-80 characters: a-z, 0-9, '.', '_' or '-'")
    if not display_name.strip():
        raise AccountError("give the person's name (--name)")
    if locale not in LOCALES:
        raise AccountError(f"the locale is one of {', '.join(LOCALES)}")
    _check_new_password(password)
    phone = normalise_phone(phone) if phone else None
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountError(f"the username {username!r} is taken")
    user = User(
        username=username,
        display_name=display_name.strip()[:200],
        email=email,
        phone=phone,
        password_hash=hash_password(password),
        active=True,
        locale=locale,
        failed_logins=0,
        session_token=secrets.token_hex(32),
        created_at=clock(),
    )
    session.add(user)
    session.flush()
    return user


def normalise_phone(raw: str) -> str:
    """A staff member's own phone in E.164 ('081 234 5678' is read as Thai); AccountError if not a number."""
    number = e164(raw)
    if number is None:
        raise AccountError("give a phone number, e.g. +66812345678 or 081 234 5678")
    return number


def set_phone(session: Session, user: User, raw: str | None) -> None:
    """Set (or with an empty value, remove) the user's own phone: SMS reminders and the call-back bridge."""
    user.phone = normalise_phone(raw) if raw and raw.strip() else None
    session.flush()


def set_password(session: Session, user: User, password: str) -> None:
    """Set a new password, unlock the account and end every session of the user."""
    _check_new_password(password)
    user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    end_all_sessions(session, user)


def end_all_sessions(session: Session, user: User) -> None:
    """A new session token: every cookie carrying the old one stops working at its next request."""
    user.session_token = secrets.token_hex(32)
    session.flush()


@dataclass(frozen=True)
class PasswordCheck:
    """A password checked against an account, read without the write lock: scrypt takes about 0.1 s."""

    user_id: int | None
    password_hash: str | None
    good: bool


def check_password(session: Session, username: str, password: str) -> PasswordCheck:
    """Check the password (reads only); record_sign_in() then decides and counts, under the write lock."""
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return PasswordCheck(None, None, False)
    return PasswordCheck(user.id, user.password_hash, check_password_hash(user.password_hash, password))


def record_sign_in(session: Session, check: PasswordCheck, *, clock: Clock = utcnow) -> User | None:
    """The user if the password was right and the account is open now; counts failures and locks after five.

    The account is read again in `session` (the write transaction), so a lock or a new password set since
    the check wins. The caller commits either way (the failure count is the point) and says the same
    thing to the person whatever the reason, so that nobody learns whether a username exists or is locked.
    """
    user = session.get(User, check.user_id) if check.user_id is not None else None
    if user is None or user.password_hash != check.password_hash:
        return None
    now = clock()
    locked = user.locked_until is not None and user.locked_until > now
    if locked or not user.active:
        return None
    if check.good:
        user.failed_logins, user.locked_until = 0, None
        session.flush()
        return user
    user.failed_logins += 1
    if user.failed_logins >= LOCK_AFTER_FAILURES:
        user.failed_logins, user.locked_until = 0, now + LOCK_FOR
        session.add(AuditEvent(at=now, user_id=user.id, action="login_locked", detail={"minutes": 15}))
        log.warning("sign-in locked for user id %d after %d failures", user.id, LOCK_AFTER_FAILURES)
    session.flush()
    return None


def set_locale(session: Session, user: User, locale: str) -> None:
    if locale in LOCALES:
        user.locale = locale
        session.flush()


class IpThrottle:
    """Failed sign-ins per client address in a sliding window (per process; the account lock is global)."""

    def __init__(self, max_failures: int = IP_MAX_FAILURES, window_s: float = IP_WINDOW_S) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, ip: str, now: float) -> deque[float]:
        times = self._failures.setdefault(ip, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def blocked(self, ip: str, now: float) -> bool:
        with self._lock:
            return len(self._recent(ip, now)) >= self.max_failures

    def failed(self, ip: str, now: float) -> None:
        with self._lock:
            self._recent(ip, now).append(now)
            if len(self._failures) > 10_000:  # forget quiet addresses rather than grow without end
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]


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
    if now - seen >= SEEN_RESOLUTION_S:
        session["seen"] = now
    return None


def init_app(app: Flask) -> None:
    cfg: Config = app.config["HOTLINE"]
    manager = LoginManager()
    manager.user_loader(_load_user)
    manager.session_protection = "basic"
    manager.init_app(app)
    app.extensions[THROTTLE_KEY] = IpThrottle()
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

    throttle: IpThrottle = current_app.extensions[THROTTLE_KEY]
    ip = request.remote_addr or "unknown"
    now = clock()
    if throttle.blocked(ip, now.timestamp()):
        log.warning("sign-in throttled for a client address")
        return render_template("console/login.html", next=nxt, error=_failure_message()), 429
    username = request.form.get("username", "")[:80]
    password = request.form.get("password", "")[:1024]
    # scrypt runs on the read-only session; only the count waits for the write lock. An unknown name
    # waits its turn at the lock too, so that the time taken tells nobody whether a name exists.
    user = record_sign_in(db(), check_password(reader(), username, password), clock=clock)
    db().commit()
    if user is None:
        throttle.failed(ip, now.timestamp())
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
