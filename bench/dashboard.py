"""Benchmark: server time of the dashboard page (and of its figures alone) at N cases, on SQLite by default.

What one run does (in-process, nothing listens on a port):

1. A throwaway instance with a SQLite database (or ``--database-url``, which must be empty), migrated and
   holding the offices; ``--reuse PATH`` keeps the seeded SQLite file at PATH and copies it next time.
2. Its own seeding (the console bench's ``seed`` may later replace it): ``--cases`` cases (default
   100,000) over the last 90 days, 85 % at the centre and the provinces, 10 % at Chiang Mai (50) and its
   districts, 5 % over all districts; each with the events its state implies (route, approve, first and
   second action, resolve, at random delays) and, for 70 %, a call-back promised 24 h after the call in
   a state that fits the case's. Two users: ``agent`` (centre: every case) and ``op50`` (Chiang Mai).
3. Per view: ``--warmup`` requests, then ``--samples`` timed requests with the Flask test client, each
   checked for 200 and its content: the dashboard of the last 30 days (the default) and of 90 days, as
   the agent and as op50; then ``cases.figures.figures`` alone for the centre's 30 days.

Printed: p50, p95 and max in ms per view, and PASS/FAIL against issue 14's target (p95 under 150 ms on
SQLite); ``--json`` prints them as JSON.

Usage (from the repo root)::

    .venv/bin/python bench/dashboard.py
    .venv/bin/python bench/dashboard.py --cases 20000 --samples 20
    .venv/bin/python bench/dashboard.py --reuse /tmp/dashboard-100k.db
    .venv/bin/python bench/dashboard.py --database-url postgresql+psycopg://postgres@127.0.0.1:5457/bench
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from figures import log, percentile  # noqa: E402  (bench/figures.py)
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app import create_app, get_database, upgrade_database  # noqa: E402
from cases import figures as fig  # noqa: E402
from cases.accounts import hash_password  # noqa: E402
from cases.models import CENTRAL_OFFICE_CODE, Callback, Case, CaseEvent, HazardGroup, Office, OfficeKind  # noqa: E402
from cases.offices import load_offices  # noqa: E402
from cases.staff import Role, RoleAssignment, User  # noqa: E402
from infra.clock import utcnow  # noqa: E402
from infra.config import Config  # noqa: E402
from tests.support.seed import bulk_reference  # noqa: E402

TARGET_P95_MS = 150.0
PASSWORD = "bench-dashboard-password"  # noqa: S105 - a throwaway instance's user
DATA_KEY = base64.urlsafe_b64encode(b"bench-dashboard-data-key-32byte!").decode("ascii")
# A state, the events it implies (in order) and the call-back states that fit it.
STATES: list[tuple[str, list[str], list[str]]] = [
    ("draft", [], ["pending", "calling"]),
    ("routed", ["route"], ["pending", "reached"]),
    ("proposed", ["route"], ["pending", "reached"]),
    ("assigned", ["route", "approve"], ["pending", "reached", "gave_up"]),
    ("in_action", ["route", "approve", "record_action", "record_action"], ["reached", "gave_up"]),
    ("resolved", ["route", "approve", "record_action", "resolve"], ["reached", "cancelled"]),
]


def make_config(instance_dir: Path, database_url: str) -> Config:
    env = {
        "HOTLINE_INSTANCE_DIR": str(instance_dir),
        "DATABASE_URL": database_url,
        "HOTLINE_SECRET_KEY": "bench-dashboard-secret-key",
        "HOTLINE_DATA_KEY": DATA_KEY,
        "TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
        "TWILIO_AUTH_TOKEN": "0" * 32,
        "PUBLIC_BASE_URL": "http://localhost",
    }
    return Config.from_env(environ=env)


def _staff(session: Session) -> None:
    password = hash_password(PASSWORD)
    for name, role, code in (("agent", Role.AGENT, CENTRAL_OFFICE_CODE), ("op50", Role.OPERATOR, "50")):
        user = User(
            username=name,
            display_name=name,
            password_hash=password,
            active=True,
            locale="th",
            failed_logins=0,
            session_token=secrets.token_hex(32),
        )
        session.add(user)
        session.flush()
        office = session.scalar(select(Office.id).where(Office.code == code))
        session.add(RoleAssignment(user_id=user.id, office_id=office, role=role))


def _offices(session: Session, rng: random.Random) -> Callable[[], tuple[int, str | None]]:
    rows = session.execute(select(Office.id, Office.code, Office.kind, Office.province_code)).all()
    big = [(r.id, r.province_code) for r in rows if r.kind != OfficeKind.DISTRICT]
    chiang_mai = [(r.id, r.province_code) for r in rows if r.province_code == "50"]
    districts = [(r.id, r.province_code) for r in rows if r.kind == OfficeKind.DISTRICT]

    def pick() -> tuple[int, str | None]:
        x = rng.random()
        return rng.choice(big if x < 0.85 else chiang_mai if x < 0.95 else districts)

    return pick


def _one_case(
    i: int, rng: random.Random, pick: Callable[[], tuple[int, str | None]]
) -> tuple[dict[str, Any], ...]:
    now = utcnow()
    created = now - timedelta(minutes=rng.randint(0, 90 * 24 * 60))
    state, actions, callback_states = rng.choice(STATES)
    office_id, province = pick()
    group = rng.choice(list(HazardGroup))
    case = {
        "reference": bulk_reference(i),
        "status": state,
        "category": group,
        "ivr_category": group,
        "language": "th",
        "province_code": province,
        "office_id": office_id,
        "callback_choice": "caller",
        "callback_number_masked": "+66 8x xxx x678",
        "opened_by": "caller",
        "created_at": created,
        "updated_at": created,
    }
    at, events = created, []
    for action in actions:
        at += timedelta(minutes=rng.randint(5, 48 * 60))
        events.append({"at": min(at, now), "action": action, "detail": {}})
    callback = None
    if rng.random() < 0.7:
        due = created + timedelta(hours=24)
        cb_state = rng.choice(callback_states)
        closed = (
            created + timedelta(hours=rng.uniform(1, 40)) if cb_state not in ("pending", "calling") else None
        )
        callback = {"state": cb_state, "due_at": due, "first_due_at": due, "closed_at": closed}
    return case, {"events": events}, {"callback": callback}


def seed(app: Flask, count: int, batch: int = 2000) -> float:
    """Offices, two users and `count` cases with their events and call-backs; returns the seconds taken."""
    t0 = time.perf_counter()
    rng = random.Random(14)
    with get_database(app).session() as session:
        load_offices(session)
        _staff(session)
        pick = _offices(session, rng)
        for start in range(0, count, batch):
            made = [_one_case(i, rng, pick) for i in range(start, min(start + batch, count))]
            ids = list(
                session.scalars(
                    insert(Case).returning(Case.id, sort_by_parameter_order=True), [m[0] for m in made]
                )
            )
            events = [{"case_id": cid, **e} for cid, m in zip(ids, made, strict=True) for e in m[1]["events"]]
            if events:
                session.execute(insert(CaseEvent), events)
            callbacks = [
                {
                    "case_id": cid,
                    "office_id": m[0]["office_id"],
                    "round": 0,
                    "attempts": 0,
                    **m[2]["callback"],
                }
                for cid, m in zip(ids, made, strict=True)
                if m[2]["callback"]
            ]
            if callbacks:
                session.execute(insert(Callback), callbacks)
            if (start // batch) % 10 == 9:
                log(f"  {start + batch:,} cases ({time.perf_counter() - t0:.0f} s)")
        session.commit()
    return time.perf_counter() - t0


def signed_in(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    match = re.search(
        r'name="csrf-token" content="([^"]+)"', client.get("/console/login").get_data(as_text=True)
    )
    if match is None:
        raise RuntimeError("no CSRF token on the login page")
    form = {"username": username, "password": PASSWORD, "csrf_token": match.group(1)}
    if client.post("/console/login", data=form).status_code != 302:
        raise RuntimeError(f"{username} could not sign in")
    return client


def timed(work: Callable[[], None], warmup: int, samples: int) -> list[float]:
    for _ in range(warmup):
        work()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        work()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _page(client: FlaskClient, query: str) -> Callable[[], None]:
    def get() -> None:
        response = client.get("/console/dashboard" + query)
        if response.status_code != 200 or "<svg" not in response.get_data(as_text=True):
            raise RuntimeError(f"GET /console/dashboard{query} answered {response.status_code}")

    return get


def measure(app: Flask, warmup: int, samples: int) -> dict[str, list[float]]:
    agent, op50 = signed_in(app, "agent"), signed_in(app, "op50")
    today = utcnow().date()
    ninety = f"?from={(today - timedelta(days=89)).isoformat()}&to={today.isoformat()}"
    views: dict[str, Callable[[], None]] = {
        "page agent 30 days": _page(agent, ""),
        "page agent 90 days": _page(agent, ninety),
        "page op50 30 days": _page(op50, ""),
        "page op50 90 days": _page(op50, ninety),
    }
    cfg: Config = app.config["HOTLINE"]

    def figures_alone() -> None:
        with get_database(app).session() as session:
            period = fig.Period.chosen(None, None, utcnow(), cfg.timezone)
            fig.figures(session, fig.Scope(None), period, utcnow())

    views["figures() centre 30 days"] = figures_alone
    return {label: timed(work, warmup, samples) for label, work in views.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--database-url")
    parser.add_argument("--reuse", type=Path, help="keep the seeded SQLite file here and copy it next time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    try:
        url = args.database_url or f"sqlite:///{work / 'hotline.db'}"
        reused = bool(args.reuse and args.reuse.exists() and not args.database_url)
        if reused:
            shutil.copyfile(args.reuse, work / "hotline.db")
        else:
            upgrade_database(url)
        app = create_app(make_config(work / "instance", url))
        seconds = 0.0 if reused else seed(app, args.cases)
        if args.reuse and not reused and not args.database_url:
            with sqlite3.connect(work / "hotline.db") as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the file that is copied
            shutil.copyfile(work / "hotline.db", args.reuse)
        log(f"seeded {args.cases:,} cases in {seconds:.0f} s" if not reused else f"reused {args.reuse}")
        load = os.getloadavg()
        results = measure(app, args.warmup, args.samples)
        get_database(app).dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        label: {
            "p50_ms": round(percentile(t, 50), 1),
            "p95_ms": round(percentile(t, 95), 1),
            "max_ms": round(max(t), 1),
        }
        for label, t in results.items()
    }
    if args.json:
        print(json.dumps({"cases": args.cases, "load_before": load, "views": out}, indent=2))
        return 0
    print(
        f"dashboard at {args.cases:,} cases ({'SQLite' if not args.database_url else 'PostgreSQL'});"
        f" load average before: {load[0]:.2f}"
    )
    for label, figures in out.items():
        verdict = "PASS" if figures["p95_ms"] < TARGET_P95_MS else "FAIL"
        print(
            f"  {label:28} p50 {figures['p50_ms']:7.1f} ms  p95 {figures['p95_ms']:7.1f} ms"
            f"  max {figures['max_ms']:7.1f} ms  {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
