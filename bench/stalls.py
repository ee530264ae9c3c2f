"""Benchmark: how long each webhook takes to answer while the database is locked, gone or stopped.

What one run does (only 127.0.0.1 traffic; everything it starts is stopped on exit, Ctrl-C or SIGTERM,
and a moved database file is put back):

1. The hotline under gunicorn as the README runs it (``--worker-class gthread --workers 2 --threads 4``)
   with the shipped webhook budget (``HOTLINE_WEBHOOK_DB_SECONDS`` unset: 4 s; ``--budget`` sets it),
   first on a throwaway SQLite database, then on a private PostgreSQL cluster that the run creates
   (``initdb`` in a temporary folder, as the postgres user when run as root), both migrated and filled
   with the offices.
2. Four scenarios, each ``--repeats`` times (default 3). Before the stall three calls are walked to
   where they will be: B at the main menu, C at the message (violence, Bangkok, call back this number),
   D at the message (accident, Chiang Mai, call back another number). Then the stall:

   a. SQLite's write lock held from outside: another sqlite3 connection in ``BEGIN IMMEDIATE``;
   b. the SQLite database file moved away (a lost volume);
   c. PostgreSQL's tables locked by another connection
      (``LOCK TABLE calls, recordings, cases IN ACCESS EXCLUSIVE MODE``);
   d. the PostgreSQL cluster stopped with ``pg_ctl stop -m fast`` in the middle of the calls.

   During it, four callers post what Twilio would, each call on its own thread, each request timed as
   Twilio sees it: A rings (``voice``), hears the rescue prompt and leaves a message
   (``rescue-recording``), then its recording status and call status callbacks come; B presses a key
   (``gather``) and leaves a rescue message; C ends its message with ``#`` (the ``<Record>`` action),
   D hangs up while recording (``Digits=hangup``); both get their recording status and call status
   callbacks. Then the database is back (lock released, file moved back, cluster started), and one more
   call rings (``voice, db back``): it must hear the menu as usual. ``--sets N`` puts N such sets of
   four calls through each stall at once: with more calls than gunicorn's 8 threads, a webhook may
   first wait for a thread that is itself waiting out its budget.
3. After each scenario's repeats: ``flask --app app spool replay``, and a look in the database: each
   of the four messages of every repeat in one case of its call, with the caller's number (masked)
   and the callback choice the caller made (C: this number, D: the other number).

Printed, per scenario and webhook: the answer time (max over the repeats), the TwiML kind answered
(rescue prompt / thanks / 200 empty, or whatever else came), and the replay: spooled files stored,
messages in a case, caller numbers and callback choices kept. PASS when every webhook answered within
6 s, every message became a case with the caller's number and callback choice, and the call after the
stall was answered as usual. ``--json`` prints the same figures as JSON.

Usage (from the repo root; about 4 minutes)::

    .venv/bin/python bench/stalls.py
    .venv/bin/python bench/stalls.py --only a,b --repeats 1       # SQLite only, once
    .venv/bin/python bench/stalls.py --only a,c --sets 4          # 16 calls in each stall at once
    .venv/bin/python bench/stalls.py --json > /tmp/stalls.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
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
import psycopg  # noqa: E402
import webhooks as wh  # noqa: E402  (bench/webhooks.py: the paced calls)
import yaml  # noqa: E402
from pg_cluster import PgCluster  # noqa: E402  (bench/pg_cluster.py)
from sqlalchemy import create_engine, make_url, text  # noqa: E402
from twilio_caller import Answer, Caller, action, recorded, walk  # noqa: E402  (bench/twilio_caller.py)

from infra.config import Config  # noqa: E402
from infra.crypto import mask_phone  # noqa: E402

WITHIN_S = 6.0  # issue 9: every webhook answers within 6 s (Twilio gives up at 15 s)
TABLES = "calls, recordings, cases"
SCENARIOS = {
    "a": "SQLite write lock held by another connection (BEGIN IMMEDIATE)",
    "b": "SQLite database file moved away",
    "c": f"PostgreSQL tables locked by another connection (LOCK TABLE {TABLES} IN ACCESS EXCLUSIVE MODE)",
    "d": "PostgreSQL stopped mid-call (pg_ctl stop -m fast)",
}
BACK = "voice, db back"  # a call that rings once the database is back: the service must answer as usual
WEBHOOKS = (
    "voice",
    "gather",
    "record #",
    "record hangup",
    "rescue-recording",
    "recording-status",
    "status",
    BACK,
)
EXPECTED = {
    "voice": "rescue prompt",
    "gather": "rescue prompt",
    "record #": "thanks",
    "record hangup": "thanks",
    "rescue-recording": "thanks",
    "recording-status": "200 empty",
    "status": "200 empty",
    BACK: "IVR step",
}
OTHER_NUMBER = "0891234567"
OTHER_E164 = "+66891234567"
REPLAY_LINE = re.compile(r"spool: (\d+) of (\d+) stored")
log = fig.log


# ---- one repeat ----------------------------------------------------------------------------------------


@dataclass
class Message:
    """A message left during the stall, and what its case must hold after the replay."""

    call: str
    call_sid: str
    recording_sid: str
    number: str
    choice: str | None  # the callback choice the caller made before the stall, if any
    callback_number: str | None


@dataclass
class Repeat:
    answers: list[Answer] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


def new_number() -> str:
    return "+6681" + "".join(str(secrets.randbelow(10)) for _ in range(7))


def caller_a(caller: Caller, out: list[Answer], messages: list[Message]) -> None:
    """A rings during the stall, hears the rescue prompt and leaves a message."""
    rescue = caller.post("voice", "/twilio/voice", CallStatus="ringing")
    out.append(rescue)
    sid = "RE" + secrets.token_hex(16)
    target = action(rescue, "Record") if rescue.kind == "rescue prompt" else "/twilio/rescue-recording"
    out.append(caller.post("rescue-recording", target, **recorded(sid, "#")))
    out.append(
        caller.post(
            "recording-status", "/twilio/recording-status", RecordingStatus="completed", **recorded(sid, "")
        )
    )
    out.append(caller.post("status", "/twilio/status", CallStatus="completed", CallDuration="40"))
    messages.append(Message("A (rings during the stall)", caller.call_sid, sid, caller.number, None, None))


def caller_b(caller: Caller, menu: Answer, out: list[Answer], messages: list[Message]) -> None:
    """B presses a key at the main menu during the stall, then leaves a rescue message."""
    rescue = caller.post("gather", action(menu, "Gather"), Digits="1")
    out.append(rescue)
    sid = "RE" + secrets.token_hex(16)
    target = action(rescue, "Record") if rescue.kind == "rescue prompt" else "/twilio/rescue-recording"
    out.append(caller.post("rescue-recording", target, **recorded(sid, "#")))
    out.append(caller.post("status", "/twilio/status", CallStatus="completed", CallDuration="30"))
    messages.append(Message("B (keys during the stall)", caller.call_sid, sid, caller.number, None, None))


def caller_record(
    caller: Caller, record: Answer, digits: str, out: list[Answer], messages: list[Message], msg: Message
) -> None:
    """C ends the message with # (then hangs up); D hangs up while recording."""
    status = "in-progress" if digits == "#" else "completed"
    out.append(
        caller.post(
            f"record {digits}",
            action(record, "Record"),
            CallStatus=status,
            **recorded(msg.recording_sid, digits),
        )
    )
    callbacks = [
        (
            "recording-status",
            "/twilio/recording-status",
            {"RecordingStatus": "completed", **recorded(msg.recording_sid, "")},
        ),
        ("status", "/twilio/status", {"CallStatus": "completed", "CallDuration": "50"}),
    ]
    if digits == "hangup":
        callbacks.reverse()  # Twilio promises no order between them
    for name, url, form in callbacks:
        out.append(caller.post(name, url, **form))
    messages.append(msg)


def prepare_set(
    base_url: str, token: str, thanks: str, out: list[Answer], messages: list[Message]
) -> tuple[list[Caller], list[Callable[[], None]]]:
    """Calls A to D, B to D walked to where they will be when the stall comes; what each then does."""
    callers = [Caller(base_url, token, thanks, new_number()) for _ in range(4)]
    a, b, c, d = callers
    try:
        menu = walk(b, [], to_record=False)
        record_c = walk(c, ["1", "10", "1", "1"], to_record=True)
        record_d = walk(d, ["2", "50", "1", "2", OTHER_NUMBER], to_record=True)
    except BaseException:
        for caller in callers:
            caller.close()
        raise
    msg_c = Message(
        "C (# ends the message)", c.call_sid, "RE" + secrets.token_hex(16), c.number, "caller", c.number
    )
    msg_d = Message(
        "D (hangs up recording)", d.call_sid, "RE" + secrets.token_hex(16), d.number, "other", OTHER_E164
    )
    work: list[Callable[[], None]] = [
        lambda: caller_a(a, out, messages),
        lambda: caller_b(b, menu, out, messages),
        lambda: caller_record(c, record_c, "#", out, messages, msg_c),
        lambda: caller_record(d, record_d, "hangup", out, messages, msg_d),
    ]
    return callers, work


def run_repeat(
    base_url: str, token: str, thanks: str, stall: AbstractContextManager[None], sets: int
) -> Repeat:
    """`sets` sets of calls A to D, all on their own threads through one stall; then a call after it."""
    out: list[Answer] = []
    messages: list[Message] = []
    callers: list[Caller] = []
    work: list[Callable[[], None]] = []
    errors: list[str] = []

    def guarded(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # a harness bug must show, not hang the repeat
            errors.append(f"{type(exc).__name__}: {exc}")

    try:
        for _ in range(sets):
            more_callers, more_work = prepare_set(base_url, token, thanks, out, messages)
            callers += more_callers
            work += more_work
        with stall:
            threads = [threading.Thread(target=guarded, args=(fn,), daemon=True) for fn in work]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.5)  # keeps Ctrl-C responsive
        if errors:
            raise RuntimeError("; ".join(errors))
        after = Caller(base_url, token, thanks, new_number())
        callers.append(after)
        back = after.post(BACK, "/twilio/voice", CallStatus="ringing")
        after.post("status", "/twilio/status", CallStatus="completed", CallDuration="5")  # hung up: untimed
        return Repeat([*out, back], messages)
    finally:
        for caller in callers:
            caller.close()


# ---- the stalls ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_locked(db_file: Path) -> Iterator[None]:
    conn = sqlite3.connect(str(db_file), isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@contextlib.contextmanager
def sqlite_moved(db_file: Path) -> Iterator[None]:
    away = db_file.with_name(db_file.name + ".away")
    db_file.rename(away)
    try:
        yield
    finally:
        away.rename(db_file)


@contextlib.contextmanager
def pg_locked(url: str) -> Iterator[None]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(f"LOCK TABLE {TABLES} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


@contextlib.contextmanager
def pg_stopped(cluster: PgCluster) -> Iterator[None]:
    cluster.stop("fast")
    try:
        yield
    finally:
        cluster.start()


# ---- replay and the cases ------------------------------------------------------------------------------


def replay(env: Mapping[str, str]) -> dict[str, Any]:
    """`flask --app app spool replay`, as an operator runs it once the database is back."""
    cmd = [sys.executable, "-m", "flask", "--app", "app", "spool", "replay"]
    done = subprocess.run(cmd, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=120)
    m = REPLAY_LINE.search(done.stdout)
    return {
        "exit_code": done.returncode,
        "output": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()[-300:],
        "stored": int(m[1]) if m else 0,
        "waiting": int(m[2]) if m else 0,
    }


CASE_SQL = text(
    "SELECT cs.id, cs.callback_choice, cs.callback_number_masked, ca.caller_number_masked, "
    "(SELECT count(*) FROM cases c2 WHERE c2.call_id = ca.id) AS cases_of_call "
    "FROM recordings r JOIN cases cs ON r.case_id = cs.id JOIN calls ca ON cs.call_id = ca.id "
    "WHERE r.recording_sid = :rec AND ca.call_sid = :sid"
)


def check_messages(database_url: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    out = []
    try:
        with engine.connect() as conn:
            for m in messages:
                row = conn.execute(CASE_SQL, {"rec": m.recording_sid, "sid": m.call_sid}).first()
                in_case = row is not None and row.cases_of_call == 1
                number_kept = row is not None and row.caller_number_masked == mask_phone(m.number)
                choice_kept = None
                if m.choice is not None:
                    choice_kept = (
                        row is not None
                        and row.callback_choice == m.choice
                        and row.callback_number_masked == mask_phone(m.callback_number)
                    )
                out.append(
                    {
                        "call": m.call,
                        "in_one_case": in_case,
                        "number_kept": number_kept,
                        "choice_kept": choice_kept,
                        "choice": row.callback_choice if row is not None else None,
                    }
                )
    finally:
        engine.dispose()
    return out


# ---- a scenario ----------------------------------------------------------------------------------------


@dataclass
class Target:
    """One running app: its server, environment and database."""

    server: gs.GunicornServer
    env: dict[str, str]
    database_url: str
    token: str
    thanks: str


def run_scenario(
    key: str, target: Target, make_stall: Callable[[], AbstractContextManager[None]], repeats: int, sets: int
) -> dict[str, Any]:
    log(f"  ({key}) {SCENARIOS[key]}: {repeats} repeat(s) of {4 * sets} calls")
    answers: list[Answer] = []
    messages: list[Message] = []
    for _ in range(repeats):
        rep = run_repeat(target.server.base_url, target.token, target.thanks, make_stall(), sets)
        answers += rep.answers
        messages += rep.messages
    spooled = len(list(Config.from_env(environ=target.env).spool_dir.glob("*.json")))
    replayed = replay(target.env)
    checks = check_messages(target.database_url, messages)
    webhooks = {}
    for name in WEBHOOKS:
        mine = [a for a in answers if a.webhook == name]
        kinds = sorted({a.kind for a in mine})
        webhooks[name] = {
            "count": len(mine),
            "max_s": round(max(a.seconds for a in mine), 3) if mine else None,
            "min_s": round(min(a.seconds for a in mine), 3) if mine else None,
            "kinds": kinds,
            "expected_kind": EXPECTED[name],
            "as_expected": kinds == [EXPECTED[name]],
        }
    with_choice = [c for c in checks if c["choice_kept"] is not None]
    result = {
        "scenario": key,
        "what": SCENARIOS[key],
        "repeats": repeats,
        "webhooks": webhooks,
        "spool_files_before_replay": spooled,
        "replay": replayed,
        "messages": len(checks),
        "messages_in_one_case": sum(c["in_one_case"] for c in checks),
        "numbers_kept": sum(c["number_kept"] for c in checks),
        "choices_made": len(with_choice),
        "choices_kept": sum(bool(c["choice_kept"]) for c in with_choice),
        "message_checks": checks,
    }
    slowest = max((a.seconds for a in answers), default=0.0)
    result["slowest_s"] = round(slowest, 3)
    result["within_pass"] = (
        bool(answers)
        and slowest < WITHIN_S
        and all(not a.kind.startswith(("no answer", "HTTP")) for a in answers)
    )
    result["cases_pass"] = result["messages_in_one_case"] == len(checks) > 0
    result["kept_pass"] = result["numbers_kept"] == len(checks) and result["choices_kept"] == len(with_choice)
    result["recovered"] = webhooks[BACK]["as_expected"]
    log(
        f"    slowest answer {slowest:.2f} s; replay: {replayed['output']}; "
        f"{result['messages_in_one_case']}/{len(checks)} messages in a case"
    )
    return result


def start_target(
    name: str, tmp: Path, database_url: str, budget: float | None, flags: gs.ServerFlags, thanks: str
) -> Target:
    token = secrets.token_hex(16)
    env = gs.app_environment(tmp / name, database_url, token)
    if budget is not None:
        env["HOTLINE_WEBHOOK_DB_SECONDS"] = str(budget)
    gs.prepare_database(env)
    server = gs.GunicornServer(name, "app:create_app()", flags=flags, env=env, log_dir=tmp)
    server.start()
    server.wait_ready(flags.workers)
    return Target(server, env, database_url, token, thanks)


# ---- report and main -----------------------------------------------------------------------------------


def print_report(r: dict[str, Any]) -> None:
    c = r["config"]
    print(
        f"stalls: gunicorn {c['gunicorn']}, webhook database budget {c['budget']}, {c['repeats']} repeat(s) "
        f"a scenario, {c['calls_per_repeat']} calls a repeat; {c['cpus']} CPUs, load average "
        f"{c['load_average_at_start']:.2f} at start"
    )
    for s in r["scenarios"]:
        print(f"\n({s['scenario']}) {s['what']}")
        head = f"{'webhook':<18} {'n':>3} {'max s':>7} {'min s':>7}  answered (expected)"
        print(head)
        print("-" * len(head))
        for name, w in s["webhooks"].items():
            kinds = ", ".join(w["kinds"]) or "-"
            note = "" if w["as_expected"] else f"  (expected {w['expected_kind']})"
            print(
                f"{name:<18} {w['count']:>3} {fig.fmt(w['max_s'], '.2f'):>7} "
                f"{fig.fmt(w['min_s'], '.2f'):>7}  {kinds}{note}"
            )
        rp = s["replay"]
        print(
            f"spool files {s['spool_files_before_replay']}; replay: {rp['output']!r}; messages in one case "
            f"{s['messages_in_one_case']}/{s['messages']}, caller number kept {s['numbers_kept']}/"
            f"{s['messages']}, callback choice kept {s['choices_kept']}/{s['choices_made']}"
        )
        for check in s["message_checks"]:
            if not (check["in_one_case"] and check["number_kept"] and check["choice_kept"] is not False):
                print(f"  MISSING: {check}")
    v = r["verdict"]
    print(
        f"\nevery webhook answered within {WITHIN_S:g} s: {'PASS' if v['within'] else 'FAIL'} "
        f"(slowest {v['slowest_s']:.2f} s); every message became a case: {'PASS' if v['cases'] else 'FAIL'}; "
        f"caller number and callback choice kept: {'PASS' if v['kept'] else 'FAIL'}; "
        f"calls answered as usual once the database was back: {'PASS' if v['recovered'] else 'FAIL'}"
    )
    print("PASS" if v["pass"] else "FAIL")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Webhook answer times while the database is locked, gone or stopped (issue 9).",
        epilog="See the module docstring (bench/stalls.py) for what is measured and how to read it.",
    )
    p.add_argument("--repeats", type=int, default=3, help="repeats of each scenario [3]")
    p.add_argument(
        "--sets",
        type=int,
        default=1,
        help="sets of the four calls going through each stall at once [1: 4 calls, fewer than the 8 "
        "threads; more shows webhooks queueing for a thread while each waits its budget]",
    )
    p.add_argument("--only", default="a,b,c,d", help="scenarios to run, of a,b,c,d [a,b,c,d]")
    p.add_argument("--budget", type=float, help="HOTLINE_WEBHOOK_DB_SECONDS (unset: the app's default, 4)")
    p.add_argument("--pg-port", type=int, help="port of the private PostgreSQL cluster [a free one]")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    p.add_argument("--threads", type=int, default=wh.DEFAULT_THREADS, help="threads per gunicorn worker [4]")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    p.add_argument("--keep", action="store_true", help="keep the instance dirs and logs")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if not args.only or any(s not in SCENARIOS for s in args.only):
        p.error("--only takes scenarios among a,b,c,d")
    if args.repeats < 1 or args.sets < 1:
        p.error("--repeats and --sets must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = gs.stop_on_signals()
    load_at_start = gs.load_average()
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-stalls-"))
    flags = gs.ServerFlags(args.workers, "gthread", args.threads, 5, 2048)
    flow = yaml.safe_load((ROOT / "ivr_flows" / "hotline.yaml").read_text(encoding="utf-8"))
    thanks = str(flow["rescue"]["thanks"]["th"]).strip()
    servers: list[gs.GunicornServer] = []
    cluster: PgCluster | None = None
    results: list[dict[str, Any]] = []
    try:
        log(f"bench: {tmp}; gunicorn {flags.describe()}")
        if {"a", "b"} & set(args.only):
            db_file = tmp / "hotline.db"
            target = start_target("sqlite", tmp, f"sqlite:///{db_file}", args.budget, flags, thanks)
            servers.append(target.server)
            if "a" in args.only:
                results.append(
                    run_scenario("a", target, lambda: sqlite_locked(db_file), args.repeats, args.sets)
                )
            if "b" in args.only:
                results.append(
                    run_scenario("b", target, lambda: sqlite_moved(db_file), args.repeats, args.sets)
                )
            target.server.stop()
        if {"c", "d"} & set(args.only):
            cluster = PgCluster(args.pg_port or gs.free_port())
            cluster.start()
            cluster.create_database()
            pg = cluster
            target = start_target("postgresql", tmp, cluster.url, args.budget, flags, thanks)
            servers.append(target.server)
            if "c" in args.only:
                results.append(run_scenario("c", target, lambda: pg_locked(pg.url), args.repeats, args.sets))
            if "d" in args.only:
                results.append(run_scenario("d", target, lambda: pg_stopped(pg), args.repeats, args.sets))
        slowest = max(s["slowest_s"] for s in results)
        verdict = {
            "within_s": WITHIN_S,
            "slowest_s": slowest,
            "within": all(s["within_pass"] for s in results),
            "cases": all(s["cases_pass"] for s in results),
            "kept": all(s["kept_pass"] for s in results),
            "recovered": all(s["recovered"] for s in results),
        }
        verdict["pass"] = all(verdict[k] for k in ("within", "cases", "kept", "recovered"))
        report = {
            "config": {
                "gunicorn": flags.describe(),
                "budget": f"{args.budget:g} s" if args.budget else "default (5 s)",
                "repeats": args.repeats,
                "calls_per_repeat": 4 * args.sets,
                "cpus": os.cpu_count(),
                "load_average_at_start": round(load_at_start, 2),
                "postgresql": str(make_url(cluster.url).port) if cluster else None,
            },
            "scenarios": results,
            "verdict": verdict,
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_report(report)
        if args.keep:
            log(f"kept: {tmp}")
        return 0 if verdict["pass"] else 1
    except KeyboardInterrupt:
        log("interrupted: stopping everything this run started")
        return 130
    finally:
        stop.set()
        for server in servers:
            server.stop()
        if cluster is not None:
            cluster.destroy()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
