"""Benchmark: paced calls while staff read the console, the worker transcribes and reminders fall due.

What one run does (only 127.0.0.1 traffic; everything it starts is stopped on exit, Ctrl-C or SIGTERM):

1. A throwaway instance dir with a SQLite database (or ``--database-url``: an empty PostgreSQL database),
   migrated and filled with the offices (``flask --app app db upgrade``, ``offices load``), then seeded:
   ``tests.support.seed.seed_console`` (its staff and nine linked cases), ``--cases`` plain cases
   (default 500) at the central office, Chiang Mai (50) and Bangkok (10), each with the call and IVR
   path a real one has (``bench/console_pages.py``'s ``attach_calls``), and one staff user per session
   (``staff001``...):
   agents at the central office (they see every case) and SC-Operators of 50 and of 10, in turn.
2. The hotline under gunicorn as the README runs it on SQLite (``--worker-class gthread --workers 2
   --threads 4``), and one real ``flask --app app worker`` beside it (sweeps every 2 s, one
   transcriber). The worker downloads every call's message from the simulator's MediaServer and runs
   its transcription sweep as the README runs it: Thai messages go to the shipped Whisper base model
   (the simulator's message is a tone: voice activity detection finds no speech, ``no_speech``).
   ``--recognize`` configures the Korean Vosk model of the test extra as the Thai one instead
   (``HOTLINE_VOSK_MODELS=th=...``, ``HOTLINE_ENGINE_TH=vosk``): every message then goes through Vosk
   (a tone: ``no_speech``, about 0.5 s of a core each). The paced calls leave a message every ~0.13 s,
   20-40 times what 50 real calls do, so the transcriber then works the whole run: a worst case for the
   CPU the worker takes.
3. A staff process signs every user in through the login form (the CSRF token read from the page), then
   the levels run one after another (``--staff``, default 0,4,16,64 sessions). In each level: reminders
   of freshly seeded open callbacks fall due over the level (``--reminders`` each, as in
   ``bench/reminders.py``), the staff sessions reload the queue and open case pages (a pause of
   ``--staff-think-ms`` before each page, 0.5x to 1.5x), and ``--calls`` paced callers (``bench/webhooks.py``:
   the full hotline path, 9 webhooks a call, ``--think-ms`` before each key) place calls back to back for
   ``--duration`` seconds. The default pause, 2 s, is a stress pace (a page as soon as the last one is
   read): 16 staff ask for ~8 pages a second, 64 for ~32, which on 2 cores does not fit beside the calls
   (a page costs the server ~20-30 ms of CPU); the pages/s column says what was served.
4. Validation: every call ended with ``<Hangup>`` and every webhook answered 200, and the database holds
   per call placed one call, one case and the call's completed recording linked to that case; every
   console page answered 200 with its content.

Printed, one row per staff level: IVR webhook latency as Twilio sees it (p50, p99, max over all steps,
and the worst step's p99), the console pages' p50/p99 (queue and case page, as the staff's browser
sees them), pages served a second and errors; then how busy the machine was (load average, the cores used by
the server, the worker, the staff, the callers, PostgreSQL's processes when it runs here, and every
other process: other sessions' work inflates every figure). Then PASS/FAIL against issue 9: SQLite,
50 paced calls, 16 staff: IVR p99 < 100 ms and max < 1 s (p99 with no staff printed beside);
PostgreSQL, 64 staff: IVR p99 < 100 ms. ``--json`` prints the same figures as JSON.

The levels run in order on one growing database: each level's calls add cases that the next level's
staff page through (about 450 calls a minute at the defaults).

Usage (from the repo root; ~5 min at the defaults on 2 cores)::

    .venv/bin/python bench/mixed_load.py
    .venv/bin/python bench/mixed_load.py --staff 0,16 --duration 30        # a quicker look
    .venv/bin/python bench/mixed_load.py --database-url postgresql+psycopg://postgres@127.0.0.1:55444/bench
    .venv/bin/python bench/mixed_load.py --json > /tmp/mixed.json
    .venv/bin/python bench/mixed_load.py --console-workers 1   # the console in a gunicorn of its own
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(BENCH_DIR) not in sys.path:
    sys.path.append(str(BENCH_DIR))  # last: bench/transcription.py must not hide the package

import console_pages as console_bench  # noqa: E402  (bench/console_pages.py: calls for seeded cases)
import figures as fig  # noqa: E402  (bench/figures.py: percentiles and formatting)
import gunicorn_server as gs  # noqa: E402  (bench/gunicorn_server.py: gunicorn, the app's environment)
import reminders as rem  # noqa: E402  (bench/reminders.py: open callbacks with reminders, the worker)
import staff_sessions  # noqa: E402  (bench/staff_sessions.py: the staff at the console)
import webhooks as wh  # noqa: E402  (bench/webhooks.py: the paced calls)
from sqlalchemy import bindparam, create_engine, func, select, text  # noqa: E402

from cases.accounts import hash_password  # noqa: E402
from cases.models import CENTRAL_OFFICE_CODE, Office, Reminder, ReminderKind  # noqa: E402
from cases.staff import Role, RoleAssignment, User  # noqa: E402
from infra.clock import utcnow  # noqa: E402
from infra.config import Config  # noqa: E402
from infra.crypto import FieldCipher  # noqa: E402
from telephony.simulator.config import SimulatorConfig  # noqa: E402
from telephony.simulator.media_server import MediaServer  # noqa: E402
from tests.support.seed import SEED_PASSWORD, seed_bulk_cases  # noqa: E402
from transcription.registry import installed_model_packages  # noqa: E402

TARGET_P99_MS = 100.0
TARGET_MAX_MS = 1000.0
SQLITE_TARGET_STAFF = 16
PG_TARGET_STAFF = 64
TARGET_CALLS = 50
CASE_OFFICES = (CENTRAL_OFFICE_CODE, "50", "10")
# Staff roles in turn: agents see every case; an office's SC-Operators see its routed cases.
STAFF_ROLES = ((Role.AGENT, CENTRAL_OFFICE_CODE), (Role.OPERATOR, "50"), (Role.OPERATOR, "10"))
REMINDER_KINDS = (ReminderKind.BEFORE_DUE, ReminderKind.AT_DUE, ReminderKind.ESCALATE_HEAD)
log = fig.log


# ---- CPU of process trees -------------------------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, of its children it has reaped, and of its live descendants."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return own + sum(tree_cpu_seconds(child) for child in gs.child_pids(pid))


def postmaster_pid(database_url: str) -> int | None:
    """The PostgreSQL server's main process when it runs on this machine (its CPU is the database's)."""
    if not database_url.startswith("postgresql"):
        return None
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with open(f"/proc/{backend}/stat", encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None  # another host (or no /proc): its CPU is not ours to see
    finally:
        engine.dispose()


@dataclass
class Meters:
    """CPU seconds so far of each part of the system under load, and of the whole machine."""

    pids: dict[str, list[int]]

    def read(self) -> dict[str, float]:
        out = {name: sum(tree_cpu_seconds(p) for p in pids) for name, pids in self.pids.items()}
        out["callers"] = time.process_time()
        out["machine"] = gs.machine_busy_seconds()
        return out


# ---- seeding -------------------------------------------------------------------------------------------


def seed_world(seeder: rem.Seeder, config: Config, cases: int, staff_count: int) -> list[str]:
    """Plain cases with their calls, and one staff user per session; returns the usernames."""
    with seeder.db.session() as s:
        seed_bulk_cases(s, cases, office_codes=list(CASE_OFFICES), rng=random.Random(3))
        console_bench.attach_calls(s, FieldCipher(config.data_key))
        offices = {o.code: o.id for o in s.scalars(select(Office).where(Office.code.in_(CASE_OFFICES)))}
        password_hash = hash_password(SEED_PASSWORD)  # one scrypt for all: seeding stays quick
        names = []
        for i in range(staff_count):
            role, code = STAFF_ROLES[i % len(STAFF_ROLES)]
            user = User(
                username=f"staff{i + 1:03d}",
                display_name=f"Staff {i + 1}",
                password_hash=password_hash,
                active=True,
                locale="th",
                failed_logins=0,
                session_token=secrets.token_hex(32),
                created_at=utcnow(),
            )
            s.add(user)
            s.flush()
            s.add(RoleAssignment(user_id=user.id, office_id=offices[code], role=role))
            names.append(user.username)
    return names


def reminders_due(seeder: rem.Seeder, n: int, within_s: float, rng: random.Random) -> list[int]:
    """n open callbacks whose reminders fall due over the next `within_s` seconds; their ids."""
    if n <= 0:
        return []
    start = utcnow() + timedelta(seconds=1)
    rows = [
        (
            start + timedelta(seconds=rng.uniform(0, within_s)),
            REMINDER_KINDS[i % len(REMINDER_KINDS)],
            CASE_OFFICES[i % len(CASE_OFFICES)],
        )
        for i in range(n)
    ]
    return seeder.add(rows)


def case_count(seeder: rem.Seeder) -> int:
    with seeder.db.session() as s:
        return int(s.scalar(text("SELECT count(*) FROM cases")) or 0)


# ---- one level -----------------------------------------------------------------------------------------


@dataclass
class Level:
    staff: int
    cases_at_start: int
    ivr: wh.Phase
    pages: staff_sessions.StaffResult | None
    server_ms: dict[str, list[float]]
    cpu: dict[str, float]
    load_average: float
    reminder_ids: list[int] = field(default_factory=list)


def page_kind(key: str) -> str | None:
    """Which console page a gunicorn access-log key is (gs.step_key of its URL), if it is one."""
    if key == "/console/":
        return "queue"
    if key.isdigit():
        return "case"
    return None


@dataclass
class Rig:
    """What the levels share: the running processes, the calls' configuration, the seeder."""

    args: argparse.Namespace
    servers: list[gs.GunicornServer]  # the webhooks' first; with --console-workers, the console's
    sim: SimulatorConfig
    media: MediaServer
    wav: bytes
    staff: staff_sessions.StaffProcess
    seeder: rem.Seeder
    meters: Meters
    stop: threading.Event
    rng: random.Random


def run_level(rig: Rig, n: int, index: int) -> Level:
    args = rig.args
    cases_at_start = case_count(rig.seeder)
    reminder_ids = reminders_due(rig.seeder, args.reminders, args.duration, rig.rng)
    log(f"  level {index + 1}: {n} staff, {args.calls} paced callers for {args.duration:g} s")
    if n:
        rig.staff.start(n)
    cpu0, log0 = rig.meters.read(), [s.access_log_size() for s in rig.servers]
    try:
        ivr, _ = wh.drive_ivr(
            f"IVR with {n} staff",
            rig.sim,
            rig.media,
            rig.wav,
            concurrency=args.calls,
            rounds=1_000_000,
            think_ms=args.think_ms,
            seed=args.seed + index,
            stop=rig.stop,
            until=time.monotonic() + args.duration,
        )
    finally:
        pages = rig.staff.stop() if n else None
    cpu1 = rig.meters.read()
    time.sleep(0.3)  # gunicorn writes the access line after the response: let the last ones land
    server_ms: dict[str, list[float]] = {"ivr": [], "queue": [], "case": []}
    for server, start in zip(rig.servers, log0, strict=True):
        for key, values in server.server_timings(start, server.access_log_size()).items():
            kind = "ivr" if key in ivr.latencies else page_kind(key)
            if kind:
                server_ms[kind] += values
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu1}
    log(
        f"    {ivr.requests} webhooks ({len(ivr.call_sids)} calls), {len(ivr.failures)} failures; "
        f"{pages.requests if pages else 0} console pages, {len(pages.failures) if pages else 0} failures"
    )
    return Level(n, cases_at_start, ivr, pages, server_ms, cpu, gs.load_average(), reminder_ids)


# ---- figures -------------------------------------------------------------------------------------------


def level_json(lv: Level) -> dict[str, Any]:
    ivr = wh.phase_json(lv.ivr)
    steps = [s for s in ivr["steps"] if s["client"]["p99_ms"] is not None]
    worst = max(steps, key=lambda s: s["client"]["p99_ms"]) if steps else None
    wall = lv.ivr.wall_s
    ours = ("server", "worker", "staff", "callers", "postgresql")
    other = lv.cpu["machine"] - sum(lv.cpu.get(k, 0.0) for k in ours)
    pages = lv.pages
    return {
        "staff": lv.staff,
        "cases_at_start": lv.cases_at_start,
        "calls": len(lv.ivr.call_sids),
        "webhooks": lv.ivr.requests,
        "ivr": ivr["overall"]["client"],
        "ivr_server": fig.summary(lv.server_ms["ivr"]),
        "worst_step": worst["name"] if worst else None,
        "worst_step_p99_ms": worst["client"]["p99_ms"] if worst else None,
        "ivr_steps": ivr["steps"],
        "ivr_failures": len(lv.ivr.failures),
        "ivr_failure_examples": lv.ivr.failures[:10],
        "pages": {k: fig.summary(pages.times[k] if pages else []) for k in staff_sessions.PAGE_KINDS},
        "pages_server": {k: fig.summary(lv.server_ms[k]) for k in staff_sessions.PAGE_KINDS},
        "page_requests": pages.requests if pages else 0,
        "pages_per_s": round(pages.requests / pages.wall_s, 1) if pages and pages.wall_s else 0.0,
        "page_failures": len(pages.failures) if pages else 0,
        "page_retries": pages.retried if pages else 0,
        "page_failure_examples": pages.failures[:10] if pages else [],
        "wall_s": round(wall, 1),
        "load_average_at_end": round(lv.load_average, 2),
        "cores": {
            **{k: round(lv.cpu[k] / wall, 2) for k in ours if k in lv.cpu},
            "other": round(max(0.0, other) / wall, 2),
            "machine": round(lv.cpu["machine"] / wall, 2),
        },
    }


def verdicts(levels: list[dict[str, Any]], database: str, calls: int) -> dict[str, Any]:
    by_staff = {lv["staff"]: lv for lv in levels}
    base = by_staff.get(0)
    want = SQLITE_TARGET_STAFF if database == "sqlite" else PG_TARGET_STAFF
    lv = by_staff.get(want)
    out: dict[str, Any] = {
        "staff": want,
        "calls": calls,
        "target_p99_ms": TARGET_P99_MS,
        "target_max_ms": TARGET_MAX_MS if database == "sqlite" else None,
        "no_staff_p99_ms": base["ivr"]["p99_ms"] if base else None,
        "measured": lv is not None,
    }
    if lv is None:
        return {**out, "pass": None}
    p99, mx = lv["ivr"]["p99_ms"], lv["ivr"]["max_ms"]
    ok = p99 is not None and p99 < TARGET_P99_MS
    if database == "sqlite":
        ok = ok and mx is not None and mx < TARGET_MAX_MS
    return {**out, "p99_ms": p99, "max_ms": mx, "pass": ok and lv["ivr_failures"] == 0}


def validate(database_url: str, sids: Sequence[str], reminder_ids: Sequence[int]) -> dict[str, Any]:
    counted = wh.count_cases(database_url, sids)
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            transcripts: dict[str, int] = {}
            for i in range(0, len(sids), 500):
                stmt = text(
                    "SELECT t.status, count(*) FROM transcripts t JOIN recordings r ON t.recording_id = r.id "
                    "WHERE r.call_sid IN :sids GROUP BY t.status"
                ).bindparams(bindparam("sids", expanding=True))
                for status, n in conn.execute(stmt, {"sids": list(sids[i : i + 500])}):
                    transcripts[str(status)] = transcripts.get(str(status), 0) + int(n)
            due = select(func.count()).select_from(Reminder).where(Reminder.id.in_(list(reminder_ids)))
            sent = conn.execute(due.where(Reminder.sent_at.is_not(None))).scalar_one() if reminder_ids else 0
    finally:
        engine.dispose()
    n = len(sids)
    return {
        "calls_placed": n,
        **counted,
        "ok": counted["calls"] == counted["cases"] == counted["recordings_linked"] == n,
        "transcripts": transcripts,
        "reminders_due": len(reminder_ids),
        "reminders_sent_by_the_end": sent,
    }


def print_report(r: dict[str, Any]) -> None:
    c = r["config"]
    print(
        f"mixed load: gunicorn {c['gunicorn']}, {c['database']}, {c['cpus']} CPUs (load average "
        f"{c['load_average_at_start']:.2f} at start); {c['calls']} paced callers (think "
        f"{c['think_ms']:g} ms), staff pause {c['staff_think_ms']:g} ms, {c['duration_s']:g} s a level; "
        f"worker: {c['transcription']}; {c['reminders_per_level']} reminders due a level; "
        f"{c['seeded_cases']} seeded cases"
    )
    print(
        "ms as the client sees it; IVR = every webhook of every call; "
        "pages = the staff's queue and case pages"
    )
    head = (
        f"{'staff':>5} {'cases':>6} {'calls':>5} {'webhooks':>8} | {'IVR p50':>7} {'p99':>7} {'max':>7} "
        f"{'worst p99':>9} | {'queue n':>7} {'p50':>6} {'p99':>7} | {'case n':>6} {'p50':>6} {'p99':>7} | "
        f"{'pages/s':>7} {'errors':>6}"
    )
    print(head)
    print("-" * len(head))
    f = fig.fmt
    for lv in r["levels"]:
        i, q, k = lv["ivr"], lv["pages"]["queue"], lv["pages"]["case"]
        print(
            f"{lv['staff']:>5} {lv['cases_at_start']:>6} {lv['calls']:>5} {lv['webhooks']:>8} | "
            f"{f(i['p50_ms']):>7} {f(i['p99_ms']):>7} {f(i['max_ms']):>7} {f(lv['worst_step_p99_ms']):>9} | "
            f"{q['count']:>7} {f(q['p50_ms']):>6} {f(q['p99_ms']):>7} | {k['count']:>6} {f(k['p50_ms']):>6} "
            f"{f(k['p99_ms']):>7} | {lv['pages_per_s']:>7.1f} {lv['ivr_failures'] + lv['page_failures']:>6}"
        )
    print("\nhow busy the machine was (cores used on average; 'other' = processes not part of this run)")
    parts = ["server", "worker", "staff", "callers", "postgresql", "other", "machine"]
    parts = [p for p in parts if any(p in lv["cores"] for lv in r["levels"])]
    print(f"{'staff':>5} {'load avg':>8} | " + " ".join(f"{p:>10}" for p in parts))
    for lv in r["levels"]:
        cores = " ".join(f"{f(lv['cores'].get(p), '.2f'):>10}" for p in parts)
        print(f"{lv['staff']:>5} {lv['load_average_at_end']:>8.2f} | {cores}")
    noisy = [lv for lv in r["levels"] if lv["cores"]["other"] > wh.NOISY_CORES]
    if noisy:
        print(
            f"WARNING: other processes used up to {max(lv['cores']['other'] for lv in noisy):.2f} cores: "
            "on 2 cores that shifts every figure; run again on a quiet machine"
        )
    for lv in r["levels"]:
        for example in lv["ivr_failure_examples"] + lv["page_failure_examples"]:
            print(f"  failure ({lv['staff']} staff): {example}")
    v = r["validation"]
    print(
        f"\nvalidation: {v['calls_placed']} calls placed, {v['calls']} in the database, {v['cases']} cases, "
        f"{v['recordings_linked']} completed recordings linked: {'ok' if v['ok'] else 'MISMATCH'}; "
        f"transcripts {v['transcripts']}; reminders due {v['reminders_due']}, "
        f"sent by the end {v['reminders_sent_by_the_end']}"
    )
    vd = r["verdict"]
    what = f"{c['database']}, {vd['calls']} paced calls, {vd['staff']} staff"
    if vd["calls"] != TARGET_CALLS:
        what += f" (the target is set for {TARGET_CALLS} calls)"
    if not vd["measured"]:
        print(f"target ({what}): not measured in this run")
    else:
        limit = f"p99 < {TARGET_P99_MS:g} ms" + (
            f" and max < {TARGET_MAX_MS:g} ms" if vd["target_max_ms"] else ""
        )
        print(
            f"target {limit} ({what}): p99 {f(vd['p99_ms'])} ms, max {f(vd['max_ms'])} ms "
            f"(no staff: p99 {f(vd['no_staff_p99_ms'])} ms): {'PASS' if vd['pass'] else 'FAIL'}"
        )
    print(f"run: {'ok' if r['ok'] else 'FAILED (see above)'}")


# ---- main ----------------------------------------------------------------------------------------------


def staff_levels(value: str) -> list[int]:
    try:
        levels = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers, e.g. 0,4,16,64") from None
    if not levels or any(n < 0 for n in levels):
        raise argparse.ArgumentTypeError("at least one staff count, none negative")
    return levels


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Paced calls while staff read the console, the worker transcribes, reminders fall due.",
        epilog="See the module docstring (bench/mixed_load.py) for what is measured and how to read it.",
    )
    p.add_argument("--calls", type=int, default=TARGET_CALLS, help="concurrent paced callers [50]")
    p.add_argument("--think-ms", type=float, default=wh.DEFAULT_THINK_MS, help="a caller's pause [1000]")
    p.add_argument("--staff", type=staff_levels, default=[0, 4, 16, 64], help="staff levels [0,4,16,64]")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of calls per staff level [60]")
    p.add_argument("--staff-think-ms", type=float, default=2000.0, help="a staff member's pause [2000]")
    p.add_argument("--cases", type=int, default=500, help="plain cases seeded before the run [500]")
    p.add_argument("--reminders", type=int, default=60, help="reminders falling due in each level [60]")
    p.add_argument(
        "--recognize",
        action="store_true",
        help="configure the installed Korean Vosk model as the Thai one instead of Whisper",
    )
    p.add_argument("--transcribers", type=int, default=1, help="HOTLINE_TRANSCRIBERS of the worker [1]")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    p.add_argument("--threads", type=int, default=wh.DEFAULT_THREADS, help="threads per gunicorn worker [4]")
    p.add_argument(
        "--console-workers",
        type=int,
        default=0,
        help="serve the console from a second gunicorn of this many workers, the webhooks keeping "
        "their own processes (a deployment to compare) [0: one gunicorn for both, as the README]",
    )
    p.add_argument(
        "--console-nice",
        type=int,
        default=0,
        help="with --console-workers: run the console's gunicorn at this nice value, so that callers' "
        "webhooks come first when the CPU is short [0]",
    )
    p.add_argument("--database-url", help="an empty database (postgresql+psycopg://...) instead of SQLite")
    p.add_argument("--seed", type=int, default=9, help="seed of the pauses [9]")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    p.add_argument("--keep", action="store_true", help="keep the instance dir and the logs")
    args = p.parse_args(argv)
    if args.calls < 1 or args.duration <= 0 or args.workers < 1 or args.threads < 1:
        p.error("--calls, --duration, --workers and --threads must be positive")
    if args.think_ms < 0 or args.staff_think_ms < 0 or args.cases < 0 or args.reminders < 0:
        p.error("--think-ms, --staff-think-ms, --cases and --reminders cannot be negative")
    return args


def environment(
    args: argparse.Namespace, tmp: Path, database_url: str, token: str, media: MediaServer
) -> dict[str, str]:
    env = gs.app_environment(tmp / "instance", database_url, token)
    env.update(
        TWILIO_API_BASE=media.base_url,
        HOTLINE_SWEEP_SECONDS="2",
        HOTLINE_TRANSCRIBERS=str(args.transcribers),
        PYTHONPATH=str(ROOT),
    )
    korean = installed_model_packages().get("ko")
    if args.recognize and korean is not None:
        env["HOTLINE_VOSK_MODELS"] = f"th={korean}"
        env["HOTLINE_ENGINE_TH"] = "vosk"
    return env


def start_servers(
    args: argparse.Namespace, env: dict[str, str], tmp: Path, flags: gs.ServerFlags
) -> list[gs.GunicornServer]:
    """The webhooks' gunicorn and, with --console-workers, a second one for the console pages."""
    servers = [gs.GunicornServer("ivr", "app:create_app()", flags=flags, env=env, log_dir=tmp)]
    if args.console_workers:
        pages = gs.ServerFlags(args.console_workers, "gthread", args.threads, 5, 2048)
        servers.append(gs.GunicornServer("console", "app:create_app()", flags=pages, env=env, log_dir=tmp))
    for server in servers:
        server.start()
    for server, workers in zip(servers, (args.workers, args.console_workers), strict=False):
        server.wait_ready(workers)
    if args.console_workers and args.console_nice and servers[1].proc is not None:
        console = servers[1].proc.pid
        for pid in (console, *gs.child_pids(console)):
            os.setpriority(os.PRIO_PROCESS, pid, args.console_nice)
    return servers


def process_ids(
    servers: list[gs.GunicornServer], worker: rem.Worker, team: staff_sessions.StaffProcess, database_url: str
) -> dict[str, list[int]]:
    """The processes whose CPU time the run measures, by role."""
    pids = {"server": [s.proc.pid for s in servers if s.proc], "worker": [worker.proc.pid]}
    pids["staff"] = [team.pid] if team.pid else []
    pg = postmaster_pid(database_url)
    if pg is not None:
        pids["postgresql"] = [pg]
    return pids


def run_config(
    args: argparse.Namespace,
    env: dict[str, str],
    flags: gs.ServerFlags,
    servers: int,
    sign_in_s: float,
    database: str,
    load_at_start: float,
) -> dict[str, Any]:
    console = f"; the console on a second gunicorn of {args.console_workers} worker(s)" if servers > 1 else ""
    transcription = (
        f"{env['HOTLINE_VOSK_MODELS']} ({args.transcribers} transcriber(s))"
        if "HOTLINE_VOSK_MODELS" in env
        else "as the README runs it: Thai through the shipped Whisper base model"
    )
    return {
        "database": database,
        "gunicorn": flags.describe() + console,
        "calls": args.calls,
        "think_ms": args.think_ms,
        "staff_levels": args.staff,
        "staff_think_ms": args.staff_think_ms,
        "duration_s": args.duration,
        "seeded_cases": args.cases,
        "reminders_per_level": args.reminders,
        "transcription": transcription,
        "staff_sign_in_s": sign_in_s,
        "cpus": os.cpu_count(),
        "load_average_at_start": round(load_at_start, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = gs.stop_on_signals()
    load_at_start = gs.load_average()
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-mixed-"))
    token = secrets.token_hex(16)
    database_url = args.database_url or f"sqlite:///{tmp / 'hotline.db'}"
    database = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    media = MediaServer(gs.ACCOUNT_SID, token).start()
    env = environment(args, tmp, database_url, token, media)
    flags = gs.ServerFlags(args.workers, "gthread", args.threads, 5, 2048)
    servers: list[gs.GunicornServer] = []
    worker: rem.Worker | None = None
    seeder: rem.Seeder | None = None
    team: staff_sessions.StaffProcess | None = None
    try:
        log(f"bench: {tmp}, database {database_url.split('@')[-1]}, gunicorn {flags.describe()}")
        gs.prepare_database(env)
        config = Config.from_env(environ=env)
        seeder = rem.Seeder(config)
        usernames = seed_world(seeder, config, args.cases, max(args.staff))
        log(f"  seeded {args.cases} cases and {len(usernames)} staff users")
        servers += start_servers(args, env, tmp, flags)
        server, console = servers[0], servers[-1]
        worker = rem.Worker(env, tmp / "worker.log")
        plan = staff_sessions.StaffPlan(
            console.base_url, tuple(usernames), SEED_PASSWORD, args.staff_think_ms, args.seed
        )
        team = staff_sessions.StaffProcess(plan)
        log(f"  gunicorn at {server.base_url}; worker pid {worker.proc.pid}; {len(usernames)} signed in")
        sim, wav, warm_sids = wh.warm_up(server.base_url, media, token, stop, concurrency=8)
        pids = process_ids(servers, worker, team, database_url)
        rig = Rig(args, servers, sim, media, wav, team, seeder, Meters(pids), stop, random.Random(args.seed))
        levels = [run_level(rig, n, i) for i, n in enumerate(args.staff)]
        sids = warm_sids + [sid for lv in levels for sid in lv.ivr.call_sids]
        report: dict[str, Any] = {
            "config": run_config(args, env, flags, len(servers), team.sign_in_s, database, load_at_start),
            "levels": [level_json(lv) for lv in levels],
        }
        report["validation"] = validate(database_url, sids, [i for lv in levels for i in lv.reminder_ids])
        report["verdict"] = verdicts(report["levels"], database, args.calls)
        failures = sum(lv["ivr_failures"] + lv["page_failures"] for lv in report["levels"])
        report["ok"] = report["validation"]["ok"] and failures == 0
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_report(report)
        if args.keep:
            log(f"kept: {tmp}")
        return 0 if report["ok"] and report["verdict"]["pass"] is not False else 1
    except KeyboardInterrupt:
        log("interrupted: stopping everything this run started")
        return 130
    finally:
        stop.set()
        if team is not None:
            team.close()
        if worker is not None:
            worker.stop()
        for server in servers:
            server.stop()
        media.close()
        if seeder is not None:
            seeder.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
