"""Benchmark: the worker's reminder sweep with 10,000 pending reminders, 1,000 due in the same minute,
while simulated calls hit the webhooks under gunicorn.

What one run does (only 127.0.0.1 traffic; everything it starts is stopped on exit, Ctrl-C or SIGTERM):

1. A throwaway instance dir with a SQLite database (or ``--database-url``, e.g. an empty PostgreSQL
   database), migrated and filled with the offices, the console's seeded staff (``tests.support.seed``), and
   ``--pending`` minus ``--due`` reminders due hours to days ahead (one routed case with an open
   callback each, at Chiang Mai, Bangkok or the central office: they only sit in the table).
2. The hotline under gunicorn (``bench/webhooks.py``'s flags) and one real worker,
   ``flask --app app worker``, with the configured sweep interval (``--sweep-seconds``, default 2 as in
   production): APScheduler runs the reminder sweep, the outbox and the transcription sweeps; the
   calls' recordings are served by the call simulator's MediaServer and downloaded by that worker.
3. A warm-up, then ``--callers`` paced simulated calls (bench/webhooks.py's full IVR path, think
   ``--think-ms``) for ``--rounds`` calls each: the *baseline* run, with no reminder due.
4. ``--due`` reminders are added, due over ``--spread-s`` seconds (default 60: one minute) starting
   3 s later: before-due, at-due and escalations to heads and parent offices. The same paced calls run
   again meanwhile (the *during* run); then the benchmark waits until every one is sent.

Printed: lateness (sent_at - due_at, both the worker's clock) p50/p99/max of the due reminders
against the issue's target (p99 under 2 s); the sweep's ticks that sent something (from the worker's
log: reminders per tick, milliseconds inside its transactions, p50/p99/max); the webhooks' latency
(client and gunicorn's own timing) in the baseline and during runs side by side; checks (every due
reminder sent once, one console message per recipient, the other reminders untouched); and the load
average before and after (``uptime``): other sessions on the machine inflate every figure.
``--json`` prints the same figures as JSON. No PASS/FAIL exit code: the figures are for the report.

Usage (from the repo root)::

    .venv/bin/python bench/reminders.py                      # ~3 min
    .venv/bin/python bench/reminders.py --spread-s 0         # all 1,000 due at the same instant
    .venv/bin/python bench/reminders.py --json > /tmp/reminders.json
    .venv/bin/python bench/reminders.py --database-url postgresql+psycopg://user@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(BENCH_DIR) not in sys.path:
    sys.path.append(str(BENCH_DIR))  # last: bench/transcription.py must not hide the package

import figures as fig  # noqa: E402  (bench/figures.py: percentiles and formatting)
import gunicorn_server as gs  # noqa: E402  (bench/gunicorn_server.py: gunicorn, the app's environment)
import webhooks as wh  # noqa: E402  (bench/webhooks.py: the simulated calls)
from sqlalchemy import func, insert, select  # noqa: E402

from app import create_app, get_database  # noqa: E402
from cases.models import (  # noqa: E402
    CENTRAL_OFFICE_CODE,
    Callback,
    CallbackChoice,
    CallbackState,
    Case,
    CaseStatus,
    HazardGroup,
    Notification,
    Office,
    Reminder,
    ReminderKind,
)
from infra.clock import utcnow  # noqa: E402
from infra.config import Config  # noqa: E402
from infra.crypto import FieldCipher  # noqa: E402
from telephony.simulator.media_server import MediaServer  # noqa: E402
from tests.support.seed import bulk_reference, seed_console  # noqa: E402

TARGET_P99_S = 2.0
TICK_LOG = re.compile(
    r"^(\S+ \S+) INFO cases\.callbacks: reminders: (\d+) sent \((\d+) late\).*?; (\d+) ms in (\d+) batches"
)
# Which kinds the due reminders are, and where: (share, kind, office code).
DUE_MIX = (
    (0.35, ReminderKind.AT_DUE, "50"),
    (0.25, ReminderKind.BEFORE_DUE, "50"),
    (0.15, ReminderKind.AT_DUE, "10"),
    (0.15, ReminderKind.ESCALATE_HEAD, "50"),
    (0.10, ReminderKind.ESCALATE_PARENT, CENTRAL_OFFICE_CODE),
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


# ---- seeding ----------------------------------------------------------------------------------------------


class Seeder:
    """Adds routed cases with an open callback and one reminder each, straight into the tables."""

    def __init__(self, config: Config) -> None:
        self.app = create_app(config)
        self.db = get_database(self.app)
        self.serial = 0
        with self.db.session() as s:
            seed_console(s, cipher=FieldCipher(config.data_key))
            self.offices = {
                o.code: o.id
                for o in s.scalars(select(Office).where(Office.code.in_(["50", "10", CENTRAL_OFFICE_CODE])))
            }

    def add(self, rows: list[tuple[datetime, ReminderKind, str]]) -> list[int]:
        """One case, callback and reminder per (due time, kind, office code); returns the reminder ids.

        The database numbers the rows (the IVR opens cases meanwhile). References run in sequence from
        80000000 up: distinct among themselves, and the IVR draws again on the rare clash with one.
        """
        now = utcnow()
        reminder_ids: list[int] = []
        with self.db.session() as s:
            for chunk in range(0, len(rows), 1000):
                part = rows[chunk : chunk + 1000]
                cases = [
                    {
                        "reference": bulk_reference(7_000_000 + self.serial + i),
                        "status": CaseStatus.ROUTED,
                        "category": HazardGroup.VIOLENCE,
                        "ivr_category": HazardGroup.VIOLENCE,
                        "language": "th",
                        "province_code": None if code == CENTRAL_OFFICE_CODE else code,
                        "office_id": self.offices[code],
                        "callback_choice": CallbackChoice.CALLER,
                        "callback_number_masked": "08X-XXX-X123",
                        "opened_by": "caller",
                        "created_at": now - timedelta(hours=1),
                        "updated_at": now,
                    }
                    for i, (_due, _kind, code) in enumerate(part)
                ]
                self.serial += len(part)
                case_ids = list(
                    s.scalars(insert(Case).returning(Case.id, sort_by_parameter_order=True), cases)
                )
                callbacks = [
                    {
                        "case_id": case_id,
                        "office_id": self.offices[code],
                        "state": CallbackState.PENDING,
                        "due_at": due,
                        "first_due_at": due,
                        "round": 0,
                        "attempts": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for case_id, (due, _kind, code) in zip(case_ids, part, strict=True)
                ]
                callback_ids = list(
                    s.scalars(
                        insert(Callback).returning(Callback.id, sort_by_parameter_order=True), callbacks
                    )
                )
                reminders = [
                    {
                        "callback_id": callback_id,
                        "case_id": case_id,
                        "round": 0,
                        "kind": kind,
                        "due_at": due,
                        "office_id": self.offices[code],
                        "late": False,
                    }
                    for callback_id, case_id, (due, kind, code) in zip(
                        callback_ids, case_ids, part, strict=True
                    )
                ]
                reminder_ids += s.scalars(
                    insert(Reminder).returning(Reminder.id, sort_by_parameter_order=True), reminders
                )
        return reminder_ids

    def close(self) -> None:
        self.db.dispose()


def later_rows(n: int, rng: random.Random) -> list[tuple[datetime, ReminderKind, str]]:
    now = utcnow()
    kinds = list(ReminderKind)
    codes = ["50", "10", CENTRAL_OFFICE_CODE]
    return [
        (now + timedelta(hours=rng.uniform(1, 72)), rng.choice(kinds), rng.choice(codes)) for _ in range(n)
    ]


def due_rows(
    n: int, start: datetime, spread_s: float, rng: random.Random
) -> list[tuple[datetime, ReminderKind, str]]:
    rows = []
    for share, kind, code in DUE_MIX:
        for _ in range(round(n * share)):
            rows.append((start + timedelta(seconds=rng.uniform(0, spread_s)), kind, code))
    while len(rows) < n:
        rows.append((start + timedelta(seconds=rng.uniform(0, spread_s)), ReminderKind.AT_DUE, "50"))
    return rows[:n]


# ---- the worker --------------------------------------------------------------------------------------------


class Worker:
    """`flask --app app worker` in its own process group, its log in a file; stopped by pid."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "app", "worker"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while "worker started" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{self.text()[-3000:]}")
            time.sleep(0.2)

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        return gs.process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def ticks(worker_log: str, since: datetime) -> list[dict[str, Any]]:
    """The sweep runs that sent something, from the worker's log lines (local time, seconds precision)."""
    out = []
    for line in worker_log.splitlines():
        m = TICK_LOG.match(line)
        if not m:
            continue
        at = datetime.strptime(m[1].split(",")[0], "%Y-%m-%d %H:%M:%S").astimezone()
        if at + timedelta(seconds=1) < since:
            continue
        out.append({"sent": int(m[2]), "late": int(m[3]), "busy_ms": int(m[4]), "batches": int(m[5])})
    return out


# ---- main ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--pending", type=int, default=10_000, help="reminders in the table (default 10,000)")
    p.add_argument("--due", type=int, default=1_000, help="of them, due in the measured minute (1,000)")
    p.add_argument("--spread-s", type=float, default=60.0, help="the due ones fall due over this long (60)")
    p.add_argument("--sweep-seconds", type=float, default=2.0, help="HOTLINE_SWEEP_SECONDS (2, as shipped)")
    p.add_argument("--callers", type=int, default=20, help="concurrent simulated calls (20)")
    p.add_argument("--rounds", type=int, default=10, help="calls per caller in each run (10: ~70 s)")
    p.add_argument("--think-ms", type=float, default=1000.0, help="a caller's pause before each key (1000)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    p.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (4)")
    p.add_argument("--database-url", default=None, help="an empty database instead of a new SQLite file")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the instance dir and logs")
    return p.parse_args(argv)


def paced_calls(
    args: argparse.Namespace,
    server: gs.GunicornServer,
    media: MediaServer,
    auth_token: str,
    stop: threading.Event,
) -> Callable[[str, int], wh.Phase]:
    """Warm the server up, then give back what places one measured round of paced calls."""
    sim, wav, _ = wh.warm_up(server.base_url, media, auth_token, stop, concurrency=4)

    def calls(name: str, seed: int) -> wh.Phase:
        pace = {"concurrency": args.callers, "rounds": args.rounds, "think_ms": args.think_ms}
        return wh.drive_ivr(name, sim, media, wav, seed=seed, stop=stop, **pace)[0]

    return calls


def wait_all_sent(seeder: Seeder, due_ids: list[int], worker: Worker, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with seeder.db.session() as s:
            left = s.scalar(
                select(func.count())
                .select_from(Reminder)
                .where(Reminder.id.in_(due_ids), Reminder.sent_at.is_(None))
            )
        if not left:
            return
        if time.monotonic() > deadline or worker.proc.poll() is not None:
            raise RuntimeError(f"{left} due reminders never sent:\n{worker.text()[-3000:]}")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = gs.stop_on_signals()
    rng = random.Random(args.seed)
    uptime_before = uptime()
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-reminders-"))
    auth_token = secrets.token_hex(16)
    database_url = args.database_url or f"sqlite:///{tmp / 'hotline.db'}"
    media = MediaServer(gs.ACCOUNT_SID, auth_token).start()
    env = gs.app_environment(tmp / "instance", database_url, auth_token)
    env.update(
        TWILIO_API_BASE=media.base_url,
        HOTLINE_SWEEP_SECONDS=str(args.sweep_seconds),
        HOTLINE_TRANSCRIBERS="1",
        PYTHONPATH=str(ROOT),
    )
    flags = gs.ServerFlags(args.workers, "gthread", args.threads, 5, 2048)
    server: gs.GunicornServer | None = None
    worker: Worker | None = None
    seeder: Seeder | None = None
    try:
        log(f"bench: {tmp}, database {database_url.split('@')[-1]}; {uptime_before}")
        gs.prepare_database(env)
        config = Config.from_env(environ=env)
        seeder = Seeder(config)
        started = time.perf_counter()
        seeder.add(later_rows(args.pending - args.due, rng))
        log(
            f"  seeded {args.pending - args.due} reminders due later in {time.perf_counter() - started:.1f} s"
        )

        server = gs.GunicornServer("ivr", "app:create_app()", flags=flags, env=env, log_dir=tmp)
        server.start()
        server.wait_ready(args.workers)
        worker = Worker(env, tmp / "worker.log")
        log(f"  gunicorn {flags.describe()} at {server.base_url}; worker pid {worker.proc.pid}")
        calls = paced_calls(args, server, media, auth_token, stop)

        log(f"  baseline: {args.callers} paced callers x {args.rounds} calls, no reminder due")
        baseline = wh.run_measured(lambda: calls("webhooks, no reminder due", 1), server)

        due_start = utcnow() + timedelta(seconds=3)
        due_ids = seeder.add(due_rows(args.due, due_start, args.spread_s, rng))
        due_end = due_start + timedelta(seconds=args.spread_s)
        log(f"  {len(due_ids)} reminders due from {due_start:%H:%M:%S} over {args.spread_s:g} s; calls again")
        worker_cpu0 = worker.cpu_seconds()
        during = wh.run_measured(lambda: calls("webhooks, 1,000 reminders falling due", 2), server)
        wait_all_sent(seeder, due_ids, worker)
        worker_cpu = worker.cpu_seconds() - worker_cpu0
        tick_rows = ticks(worker.text(), due_start.astimezone())
        report = results(seeder, due_ids, args, tick_rows, baseline, during, due_start, due_end)
        report["worker_cpu_s"] = round(worker_cpu, 2)
        report["uptime_before"] = uptime_before
        report["uptime_after"] = uptime()
        report["database"] = "sqlite" if database_url.startswith("sqlite") else "postgresql"
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_report(report)
        if args.keep:
            log(f"kept: {tmp}")
        return 0
    except KeyboardInterrupt:
        log("interrupted: stopping")
        return 130
    finally:
        stop.set()
        if worker is not None:
            worker.stop()
        if server is not None:
            server.stop()
        media.close()
        if seeder is not None:
            seeder.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def results(
    seeder: Seeder,
    due_ids: list[int],
    args: argparse.Namespace,
    tick_rows: list[dict[str, Any]],
    baseline: wh.Phase,
    during: wh.Phase,
    due_start: datetime,
    due_end: datetime,
) -> dict[str, Any]:
    with seeder.db.session() as s:
        sent = s.execute(
            select(Reminder.due_at, Reminder.sent_at, Reminder.late).where(Reminder.id.in_(due_ids))
        ).all()
        lateness = [(sent_at - due_at).total_seconds() for due_at, sent_at, _late in sent]
        marked_late = sum(1 for *_x, late in sent if late)
        others_sent = s.scalar(
            select(func.count())
            .select_from(Reminder)
            .where(Reminder.id.not_in(due_ids), Reminder.sent_at.is_not(None))
        )
        per_reminder = s.execute(
            select(Notification.reminder_id, Notification.user_id, func.count())
            .where(Notification.reminder_id.in_(due_ids))
            .group_by(Notification.reminder_id, Notification.user_id)
            .having(func.count() > 1)
        ).all()
        messages = s.scalar(
            select(func.count()).select_from(Notification).where(Notification.reminder_id.in_(due_ids))
        )
    return {
        "config": {
            "pending": args.pending,
            "due": args.due,
            "spread_s": args.spread_s,
            "sweep_seconds": args.sweep_seconds,
            "callers": args.callers,
            "rounds": args.rounds,
            "think_ms": args.think_ms,
            "cpus": os.cpu_count(),
        },
        "lateness_s": lateness_figures(lateness, marked_late),
        "ticks": tick_figures(tick_rows),
        "checks": {
            "all_sent": len(lateness) == len(due_ids),
            "duplicate_messages": len(per_reminder),
            "messages": messages,
            "other_reminders_sent": others_sent,
        },
        "webhooks": {"baseline": wh.phase_json(baseline), "during": wh.phase_json(during)},
        "due_window": [due_start.isoformat(), due_end.isoformat()],
    }


def lateness_figures(lateness: list[float], marked_late: int) -> dict[str, Any]:
    p = fig.percentile
    return {
        "count": len(lateness),
        "p50": round(p(lateness, 50), 3),
        "p99": round(p(lateness, 99), 3),
        "max": round(max(lateness), 3),
        "target_p99": TARGET_P99_S,
        "marked_late": marked_late,
    }


def tick_figures(tick_rows: list[dict[str, Any]]) -> dict[str, Any]:
    p = fig.percentile
    busy = [t["busy_ms"] for t in tick_rows]
    per_tick = [t["sent"] for t in tick_rows]
    return {
        "count": len(tick_rows),
        "sent_per_tick_p50": p(per_tick, 50) if per_tick else None,
        "sent_per_tick_max": max(per_tick) if per_tick else None,
        "busy_ms_p50": p(busy, 50) if busy else None,
        "busy_ms_p99": p(busy, 99) if busy else None,
        "busy_ms_max": max(busy) if busy else None,
        "batches_max": max((t["batches"] for t in tick_rows), default=None),
    }


def print_report(r: dict[str, Any]) -> None:
    c, lt, tk, ck = r["config"], r["lateness_s"], r["ticks"], r["checks"]
    print(
        f"reminder sweep benchmark: {c['pending']} pending reminders, {c['due']} due over "
        f"{c['spread_s']:g} s; "
        f"sweep every {c['sweep_seconds']:g} s; {r['database']}; {c['cpus']} CPUs"
    )
    print(f"before: {r['uptime_before']}\nafter:  {r['uptime_after']}")
    print(
        f"\nlateness (sent_at - due_at) of the {lt['count']} due: p50 {lt['p50']:.3f} s, "
        f"p99 {lt['p99']:.3f} s, "
        f"max {lt['max']:.3f} s (target p99 < {lt['target_p99']:g} s); {lt['marked_late']} marked late"
    )
    print(
        f"sweep ticks that sent something: {tk['count']}; reminders per tick p50 {tk['sent_per_tick_p50']}, "
        f"max {tk['sent_per_tick_max']}; time in transactions per tick p50 {tk['busy_ms_p50']} ms, "
        f"p99 {tk['busy_ms_p99']} ms, max {tk['busy_ms_max']} ms (max {tk['batches_max']} batches); "
        f"worker CPU {r['worker_cpu_s']} s"
    )
    print(
        f"checks: all sent {ck['all_sent']}, {ck['messages']} messages, "
        f"{ck['duplicate_messages']} duplicated, "
        f"{ck['other_reminders_sent']} of the reminders due later sent"
    )
    for ph in (r["webhooks"]["baseline"], r["webhooks"]["during"]):
        wh.print_phase_table(ph)
    b = r["webhooks"]["baseline"]["overall"]
    d = r["webhooks"]["during"]["overall"]
    print(
        f"\nwebhooks, all steps: client p50 {fig.fmt(b['client']['p50_ms'])} -> "
        f"{fig.fmt(d['client']['p50_ms'])} ms, "
        f"p99 {fig.fmt(b['client']['p99_ms'])} -> {fig.fmt(d['client']['p99_ms'])} ms; "
        f"gunicorn p50 {fig.fmt(b['server']['p50_ms'])} -> {fig.fmt(d['server']['p50_ms'])} ms, "
        f"p99 {fig.fmt(b['server']['p99_ms'])} -> {fig.fmt(d['server']['p99_ms'])} ms (baseline -> during)"
    )


if __name__ == "__main__":
    sys.exit(main())
