"""Benchmark: the console's search and dashboard at 100,000 cases, on SQLite and (with --pg URL) PostgreSQL.

What one run does (in-process through the Flask test client; nothing listens on a port):

1. ``seed(app, n)``: the offices, ``tests.support.seed.seed_console`` (its staff and nine linked cases)
   and ``n`` bulk cases (``seed_bulk_cases``: 85 % at the centre and provinces, 10 % in Chiang Mai (50),
   5 % over the districts), then for each bulk case a callback number of its own (encrypted, with its
   search hash) and, for 40 % of them, a Thai summary of 6-14 words (written without spaces, kept in
   the search index as its words); for each bulk case the events its state implies (route, approve,
   first and second action, resolve, at random delays after the call), its milestones
   (``cases.milestones.backfill``) and, for 70 %, a call-back promised 24 h after the call; all by bulk
   statements.
2. ``search_timings(app, samples)``: signed in as ``agent`` (the centre: every case) and ``op50``
   (an SC-Operator of Chiang Mai), each search timed with ``timed(label, fn, n)``: a reference (with
   the dash), the last 4 digits of a number (POST with the CSRF token), the last 7 digits, one Thai word
   and two Thai words; every answer is checked for 200 and a result.

3. ``dashboard_timings(app, samples)`` (passed to ``run(..., extra=[...])``; ``--no-dashboard`` leaves it
   out): the dashboard page as agent and op50 over the last 30 days (the default) and 90 days, each
   checked for 200 and a chart; then ``cases.figures.figures`` and its medians alone for the centre's 30
   days. The pages and figures() are timed again with "old figures" (bench/figures_before.py: the 13
   statements cases.figures counted with before its one-pass rewrite), after checking both give equal
   figures; figures() and the medians again "before 0017": with the medians read as they were before
   migration 0017 (every case of the period joined to its events); on the same data in the same run.
   The pages are timed with the page's 60 s figure cache off (every request counts), then, "cached", as
   served (the warm-up requests fill the cache).

Printed: p50, p95 and max per search or page and user, the median CPU time of this process, PASS/FAIL
against issue 14's 150 ms p95 (SQLite), and the load average before and after (other sessions share the
CPU: a busy machine inflates the wall times).

Usage (from the repo root)::

    .venv/bin/python bench/console.py                        # 100,000 cases on SQLite
    .venv/bin/python bench/console.py --cases 20000 --samples 30
    .venv/bin/python bench/console.py --reuse /tmp/search-100k.db   # seeds once, then copies the file
    .venv/bin/python bench/console.py --pg postgresql+psycopg://postgres@127.0.0.1:5454/bench  # an empty db
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
# This file's name is the console package's: bench/ goes last on the path, so `console` is the package
# and only figures/console_pages come from here.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
sys.path.append(str(BENCH))

from console_pages import make_config, office_codes, signed_in  # noqa: E402  (bench/console_pages.py)
from figures import log, percentile  # noqa: E402
from figures_before import figures_as_before  # noqa: E402  (bench/figures_before.py)
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from sqlalchemy import case, func, insert, select, text, update  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app import create_app, get_database, upgrade_database  # noqa: E402
from cases import figures as fig  # noqa: E402
from cases import milestones  # noqa: E402
from cases.models import CENTRAL_OFFICE_CODE, Callback, Case, CaseEvent, Office, OfficeKind, SearchText  # noqa: E402
from cases.offices import load_offices  # noqa: E402
from cases.reference import display_reference  # noqa: E402
from cases.search_index import SUMMARY, digits_hash  # noqa: E402
from cases.staff import User  # noqa: E402
from console import dashboard as dashboard_page  # noqa: E402
from infra.clock import utcnow  # noqa: E402
from infra.config import Config  # noqa: E402
from infra.crypto import FieldCipher, mask_phone  # noqa: E402
from tests.support.seed import PROVINCE, seed_bulk_cases, seed_console  # noqa: E402

TARGET_P95_MS = 150.0
TEXT_SHARE = 0.4  # bulk cases with a summary
BATCH = 2000
# Words of the summaries (newmm keeps each whole), from everyday reports of the hotline.
VOCAB = [
    "นักเรียน",
    "ครู",
    "โรงเรียน",
    "รุ่นพี่",
    "รังแก",
    "ทำร้าย",
    "ร่างกาย",
    "ห้องเรียน",
    "สนามฟุตบอล",
    "รถรับส่ง",
    "อุบัติเหตุ",
    "บาดเจ็บ",
    "ผู้ปกครอง",
    "ข่มขู่",
    "ถ่ายรูป",
    "โทรศัพท์",
    "ออนไลน์",
    "ซึมเศร้า",
    "เครียด",
    "ร้องไห้",
    "ไม่กล้า",
    "บอก",
    "เพื่อน",
    "ตี",
    "ด่า",
    "ล้อเลียน",
    "ขโมย",
    "เงิน",
    "ค่าขนม",
    "ห้องน้ำ",
    "โรงอาหาร",
    "ประตู",
    "หน้าต่าง",
    "ไฟไหม้",
    "น้ำท่วม",
    "หกล้ม",
    "ขาหัก",
    "ศีรษะ",
    "โรงพยาบาล",
    "ยาเสพติด",
    "บุหรี่",
    "ไฟฟ้า",
    "สุรา",
    "การพนัน",
    "ทะเลาะ",
    "วิวาท",
    "อาวุธ",
    "มีด",
    "กลางคืน",
    "เลิกเรียน",
    "ตอนเช้า",
    "ทุกวัน",
    "หอพัก",
    "รถจักรยานยนต์",
    "ถนน",
    "ผู้อำนวยการ",
    "ติดต่อ",
    "กลับ",
    "แจ้ง",
    "เหตุ",
    "ช่วยเหลือ",
    "ด่วน",
]


# --------------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------------


def seed(app: Flask, cases: int, *, events: int = 0) -> dict[str, Any]:
    """The offices, the console tests' staff and cases, and `cases` bulk cases with numbers, texts and
    the events, milestones and call-backs their states imply (`events`: extra placeholder events each)."""
    cfg: Config = app.config["HOTLINE"]
    cipher = FieldCipher(cfg.data_key)
    t0 = time.perf_counter()
    with get_database(app).session() as session:
        load_offices(session)
        seed_console(
            session, cipher=cipher, recordings_dir=cfg.recordings_dir, recording_key=cfg.recording_key
        )
        central_and_provinces = office_codes(
            session, (Office.kind == OfficeKind.PROVINCE) | (Office.code == CENTRAL_OFFICE_CODE)
        )
        chiang_mai = office_codes(session, Office.province_code == PROVINCE)
        districts = office_codes(session, Office.kind == OfficeKind.DISTRICT)
        start = 0
        shares = [(central_and_provinces, 0.85), (chiang_mai, 0.10), (districts, 0.05)]
        for i, (codes, share) in enumerate(shares):
            n = cases - start if i == len(shares) - 1 else round(cases * share)
            seed_bulk_cases(
                session, n, start=start, office_codes=codes, events_per_case=events, rng=random.Random(i)
            )
            start += n
        log(f"  {cases:,} bulk cases ({time.perf_counter() - t0:.0f} s)")
        histories(session, random.Random(14))
        log(f"  events, milestones and call-backs ({time.perf_counter() - t0:.0f} s)")
        texts = numbers_and_texts(session, cipher, random.Random(7))
        log(f"  numbers and {texts:,} summaries ({time.perf_counter() - t0:.0f} s)")
    return {"seconds": round(time.perf_counter() - t0, 1), "bulk_cases": cases, "summaries": texts}


def numbers_and_texts(session: Session, cipher: FieldCipher, rng: random.Random) -> int:
    """A number of its own (and its hash) for every case without one, and a summary for TEXT_SHARE."""
    last, texts = 0, 0
    while True:
        rows = session.execute(
            select(Case.id, Case.callback_choice)
            .where(Case.callback_number_enc.is_(None), Case.id > last)
            .order_by(Case.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return texts
        last = rows[-1].id
        changes, summaries = [], []
        for case_id, choice in rows:
            change: dict[str, Any] = {"id": case_id}
            if choice != "none":
                number = "+668" + "".join(rng.choice("0123456789") for _ in range(8))
                change.update(
                    callback_number_enc=cipher.encrypt(number),
                    callback_number_masked=mask_phone(number),
                    callback_digits_hash=digits_hash(cipher, number),
                    caller_digits_hash=digits_hash(cipher, number),
                )
            if rng.random() < TEXT_SHARE:
                words = [rng.choice(VOCAB) for _ in range(rng.randint(6, 14))]
                change["summary"] = "".join(words)
                summaries.append(
                    {"case_id": case_id, "kind": SUMMARY, "source_id": case_id, "words": " ".join(words)}
                )
            changes.append(change)
        # Grouped by keys: an executemany UPDATE needs the same columns in every row.
        for keys in {tuple(sorted(c)) for c in changes}:
            group = [c for c in changes if tuple(sorted(c)) == keys]
            if len(keys) > 1:
                session.execute(update(Case), group)
        if summaries:
            session.execute(insert(SearchText), summaries)
        texts += len(summaries)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def timed(label: str, fn: Callable[[int], None], n: int, *, warmup: int = 3) -> dict[str, Any]:
    """Run fn(i) `warmup` times untimed, then n times timed; p50, p95, max in ms and PASS/FAIL."""
    for i in range(warmup):
        fn(i)
    times, cpu = [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)  # this process's CPU: what the load does not inflate
    p95 = percentile(times, 95)
    return {
        "label": label,
        "requests": n,
        "p50_ms": round(percentile(times, 50), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(max(times), 1),
        "cpu_p50_ms": round(percentile(cpu, 50), 1),
        "pass": p95 < TARGET_P95_MS,
    }


def _csrf(client: FlaskClient) -> str:
    page = client.get("/console/search/").get_data(as_text=True)
    match = re.search(r'name="csrf-token" content="([^"]+)"', page)
    if match is None:
        raise RuntimeError("no CSRF token on the search page")
    return match.group(1)


def _check(label: str, response: Any, expect: str | None) -> None:
    body = response.get_data(as_text=True)
    if response.status_code != 200 or (expect is not None and expect not in body):
        raise RuntimeError(f"{label}: answered {response.status_code} without {expect!r}")


def _samples(app: Flask, user: str) -> tuple[list[str], list[str]]:
    """References and numbers of bulk cases the user sees (op50: Chiang Mai's, not drafts)."""
    cipher = FieldCipher(app.config["HOTLINE"].data_key)
    with get_database(app).session() as session:
        stmt = select(Case.reference, Case.callback_number_enc).where(
            Case.id > 9, Case.callback_number_enc.is_not(None)
        )
        if user == "op50":
            cm50 = session.scalar(select(Office.id).where(Office.code == PROVINCE))
            stmt = stmt.where(Case.office_id == cm50, Case.status != "draft")
        rows = session.execute(stmt.order_by(func.random()).limit(50)).all()
    return [r[0] for r in rows], [cipher.decrypt(r[1]) for r in rows]


def search_timings(app: Flask, samples: int) -> list[dict[str, Any]]:
    """The searches, as the centre (agent) and as an SC-Operator of one province (op50)."""
    rows = []
    for user in ("agent", "op50"):
        rows += user_timings(app, user, samples)
        for row in rows[-5:]:
            log(f"  {row['label']}: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms")
    return rows


def user_timings(app: Flask, user: str, samples: int) -> list[dict[str, Any]]:
    client = signed_in(app, user)
    token = _csrf(client)
    references, numbers = _samples(app, user)

    def by_reference(i: int) -> None:
        shown = display_reference(references[i % len(references)])
        _check("reference", client.get(f"/console/search/?q={shown}"), shown)

    def by_digits(i: int, count: int) -> None:
        digits = numbers[i % len(numbers)][-count:]
        response = client.post("/console/search/number", data={"digits": digits, "csrf_token": token})
        _check("digits", response, "/console/cases/")

    def by_words(i: int, n_words: int) -> None:
        words = " ".join(VOCAB[(i * 7 + k * 13) % len(VOCAB)] for k in range(n_words))
        _check("words", client.get(f"/console/search/?q={words}"), None)

    return [
        timed(f"reference, {user}", by_reference, samples),
        timed(f"last 4 digits, {user}", lambda i: by_digits(i, 4), samples),
        timed(f"last 7 digits, {user}", lambda i: by_digits(i, 7), samples),
        timed(f"one Thai word, {user}", lambda i: by_words(i, 1), samples),
        timed(f"two Thai words, {user}", lambda i: by_words(i, 2), samples),
    ]


# --------------------------------------------------------------------------------------------------
# The dashboard (was bench/dashboard.py)
# --------------------------------------------------------------------------------------------------

# A state, the events it implies (in order) and the call-back states that fit it.
HISTORIES: dict[str, tuple[list[str], list[str]]] = {
    "draft": ([], ["pending", "calling"]),
    "routed": (["route"], ["pending", "reached"]),
    "proposed": (["route"], ["pending", "reached"]),
    "assigned": (["route", "approve"], ["pending", "reached", "gave_up"]),
    "in_action": (["route", "approve", "record_action", "record_action"], ["reached", "gave_up"]),
    "resolved": (["route", "approve", "record_action", "resolve"], ["reached", "cancelled"]),
}
CALLBACK_SHARE = 0.7


def histories(session: Session, rng: random.Random) -> None:
    """For each case without events: the events its state implies at random delays after the call and,
    for CALLBACK_SHARE of them, a call-back promised 24 h after the call; then every case's milestones."""
    now, last = utcnow(), 0
    while True:
        rows = session.execute(
            select(Case.id, Case.status, Case.created_at, Case.office_id)
            .where(Case.id > last, ~select(CaseEvent.id).where(CaseEvent.case_id == Case.id).exists())
            .order_by(Case.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        events, callbacks = [], []
        for case_id, status, created, office_id in rows:
            actions, callback_states = HISTORIES[str(status)]
            at = created
            for action in actions:
                at += timedelta(minutes=rng.randint(5, 48 * 60))
                events.append({"case_id": case_id, "at": min(at, now), "action": action, "detail": {}})
            if rng.random() < CALLBACK_SHARE:
                state = rng.choice(callback_states)
                closed = (
                    None if state in ("pending", "calling") else created + timedelta(hours=rng.uniform(1, 40))
                )
                due = created + timedelta(hours=24)
                callbacks.append(
                    {
                        "case_id": case_id,
                        "office_id": office_id,
                        "round": 0,
                        "attempts": 0,
                        "state": state,
                        "due_at": due,
                        "first_due_at": due,
                        "closed_at": closed,
                    }
                )
        if events:
            session.execute(insert(CaseEvent), events)
        with_callback = set(
            session.scalars(select(Callback.case_id).where(Callback.case_id.in_([r.id for r in rows])))
        )
        callbacks = [c for c in callbacks if c["case_id"] not in with_callback]
        if callbacks:
            session.execute(insert(Callback), callbacks)
    milestones.backfill(session)  # as the workflow would have kept them (tests/integration/test_milestones)


def _old_medians(session: Session, conditions: Sequence[Any]) -> list[tuple[str, fig.Median]]:
    """The medians as cases.figures read them before migration 0017: every case joined to its events."""
    firsts = [
        fig.seconds_between(func.min(case((CaseEvent.action == action, CaseEvent.at))), Case.created_at)
        for _step, action in fig.STEPS
    ]
    stmt = (
        select(*firsts)
        .select_from(Case)
        .join(CaseEvent, CaseEvent.case_id == Case.id)
        .where(*conditions)
        .group_by(Case.created_at, Case.id)
    )
    columns = list(zip(*session.execute(stmt).all(), strict=True)) or [() for _ in fig.STEPS]
    medians = []
    for (step, _a), column in zip(fig.STEPS, columns, strict=True):
        reached = [float(v) for v in column if v is not None]
        middle = round(statistics.median(reached), 1) if reached else None
        medians.append((step, fig.Median(middle, len(reached))))
    return medians


@contextlib.contextmanager
def medians_before_0017() -> Iterator[None]:
    """cases.figures reading its medians the old way (the same data; the indexes of 0016 are still there)."""
    new = fig._medians
    fig._medians = _old_medians
    try:
        yield
    finally:
        fig._medians = new


def _before(work: Callable[[int], None]) -> Callable[[int], None]:
    def old_way(i: int) -> None:
        with medians_before_0017():
            work(i)

    return old_way


def _old_figures(work: Callable[[int], None]) -> Callable[[int], None]:
    def old_way(i: int) -> None:
        with figures_as_before():
            work(i)

    return old_way


def dashboard_timings(app: Flask, samples: int) -> list[dict[str, Any]]:
    """The dashboard page as agent (the centre) and op50 (Chiang Mai) over 30 and 90 days, then the
    figures and the medians alone (the centre, 30 days); each also with the medians read as before 0017."""
    cfg: Config = app.config["HOTLINE"]
    clients = {user: signed_in(app, user) for user in ("agent", "op50")}
    today = utcnow().astimezone(cfg.timezone).date()
    ninety = {"from": (today - timedelta(days=89)).isoformat(), "to": today.isoformat()}

    def page(user: str, query: dict[str, str]) -> Callable[[int], None]:
        def get(_i: int) -> None:
            response = clients[user].get("/console/dashboard", query_string=query)
            _check(f"dashboard {user}", response, "<svg")

        return get

    def alone(work: Callable[[Session, list[Any]], object]) -> Callable[[int], None]:
        def run_it(_i: int) -> None:
            period = fig.Period.chosen(None, None, utcnow(), cfg.timezone)
            with get_database(app).session() as session:
                work(session, fig.case_conditions(fig.Scope(None), period))

        return run_it

    now = utcnow()
    for user in ("agent", "op50"):  # the same figures both ways, or the timings compare nothing
        period = fig.Period.chosen(None, None, now, cfg.timezone)
        with get_database(app).session() as session:
            scope = fig.scope_for(session, session.scalars(select(User).where(User.username == user)).one())
            assert scope is not None
            new = fig.figures(session, scope, period, now)
            with figures_as_before():
                old = fig.figures(session, scope, period, now)
        if new != old:
            raise SystemExit(f"the one-pass figures differ from the old ones:\n{new}\n{old}")
    rows = []
    cache_seconds, dashboard_page.CACHE_SECONDS = dashboard_page.CACHE_SECONDS, 0.0  # every request counts
    views = (("agent", 30, {}), ("agent", 90, ninety), ("op50", 30, {}), ("op50", 90, ninety))
    for user, days, query in views:
        rows.append(timed(f"dashboard {days} days, {user}", page(user, query), samples))
        rows.append(
            timed(f"dashboard {days} days, {user}, old figures", _old_figures(page(user, query)), samples)
        )
    dashboard_page.CACHE_SECONDS = cache_seconds
    for user in ("agent", "op50"):  # the page as served: figures kept for a minute per scope and period
        rows.append(timed(f"dashboard 30 days, {user}, cached", page(user, {}), samples))
    figures_alone = alone(  # through the module: _old_figures swaps it
        lambda s, _c: fig.figures(s, fig.Scope(None), fig.Period.chosen(None, None, now, cfg.timezone), now)
    )
    rows.append(timed("figures() centre 30 days", figures_alone, samples))
    rows.append(timed("figures() centre 30 days, old figures", _old_figures(figures_alone), samples))
    rows.append(timed("figures() centre 30 days, before 0017", _before(figures_alone), samples))
    rows.append(timed("medians centre 30 days", alone(fig._medians), samples))
    rows.append(timed("medians centre 30 days, before 0017", alone(_old_medians), samples))
    for row in rows:
        log(f"  {row['label']}: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms")
    return rows


# --------------------------------------------------------------------------------------------------
# A run
# --------------------------------------------------------------------------------------------------

Timing = Callable[[Flask, int], list[dict[str, Any]]]


def run(
    database_url: str | None,
    cases: int,
    samples: int,
    extra: Sequence[Timing] = (),
    reuse: Path | None = None,
    search: bool = True,
) -> dict[str, Any]:
    """Seed an empty database (a throwaway SQLite file when None) and time the searches and `extra`.

    `reuse` (SQLite): a seeded file copied instead of seeding when it is there, kept there otherwise.
    """
    instance_dir = Path(tempfile.mkdtemp(prefix="hotline-bench-search-"))
    sqlite_file = instance_dir / "hotline.db"
    url = database_url or f"sqlite:///{sqlite_file}"
    report: dict[str, Any] = {"database": url.split(":", 1)[0], "load_at_start": os.getloadavg()}
    app = None
    try:
        reused = database_url is None and reuse is not None and reuse.exists()
        if reused and reuse is not None:
            shutil.copyfile(reuse, sqlite_file)
        upgrade_database(url)
        app = create_app(make_config(instance_dir, url))
        app.testing = True
        with get_database(app).session() as session:
            seeded = session.scalar(select(func.count(Case.id))) or 0
        if reused or (database_url is not None and seeded):
            # PostgreSQL: a database seeded by an earlier run (same fixed keys) is measured again.
            report["seed"] = {"reused": str(reuse) if reused else "the PostgreSQL database", "cases": seeded}
        else:
            log(f"seeding {cases:,} cases in {report['database']} ...")
            report["seed"] = seed(app, cases)
            if database_url is not None:
                with get_database(app).session() as session:
                    session.execute(text("ANALYZE"))  # the planner's statistics of the bulk-loaded tables
            if database_url is None and reuse is not None:
                get_database(app).dispose()  # the last connection's close checkpoints the WAL into the file
                shutil.copyfile(sqlite_file, reuse)
        report["timings"] = search_timings(app, samples) if search else []
        for timing in extra:
            report["timings"] += timing(app, samples)
        report["load_at_end"] = os.getloadavg()
    finally:
        if app is not None:
            get_database(app).dispose()
        shutil.rmtree(instance_dir, ignore_errors=True)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"\n{report['database']}: {report['seed']}")
    loads = f"load average at start {report['load_at_start']}, at end {report['load_at_end']}"
    print(f"{loads}, cpus {os.cpu_count()}")
    print(f"{'search / dashboard':36} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'cpu p50':>8}")
    for row in report["timings"]:
        verdict = "PASS" if row["pass"] else "FAIL"
        times = f"{row['p50_ms']:8.1f} {row['p95_ms']:8.1f} {row['max_ms']:8.1f} {row['cpu_p50_ms']:8.1f}"
        print(f"{row['label']:36} {times}  {verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The console's search and dashboard at many cases (issue 14).")
    p.add_argument("--cases", type=int, default=100_000, help="bulk cases to seed [100000]")
    p.add_argument("--samples", type=int, default=100, help="timed requests per search and user [100]")
    p.add_argument("--pg", metavar="URL", help="also on this empty PostgreSQL database")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--reuse", type=Path, help="SQLite: copy the seeded database from/to this file")
    p.add_argument("--no-dashboard", action="store_true", help="time the searches only")
    p.add_argument("--no-search", action="store_true", help="time the dashboard only")
    args = p.parse_args(argv)
    extra = [] if args.no_dashboard else [dashboard_timings]
    search = not args.no_search
    reports = [run(None, args.cases, args.samples, extra, reuse=args.reuse, search=search)]
    if args.pg:
        reports.append(run(args.pg, args.cases, args.samples, extra, search=search))
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        for report in reports:
            print_report(report)
    # The target is SQLite's (issue 14); PostgreSQL's figures are printed for comparison.
    return 0 if all(row["pass"] for row in reports[0]["timings"]) else 1


if __name__ == "__main__":
    sys.exit(main())
