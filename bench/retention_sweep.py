"""Benchmark: the retention sweep over many due rows, and what it costs webhooks writing at the same time.

One run, on a throwaway SQLite file (WAL, BEGIN IMMEDIATE, as the service runs it), per mode:

1. ``--calls`` calls (default 20,000) older than every period, each with the caller's number and
   ``--events`` menu events (default 5): the sweep's ``caller_numbers`` (calls that never became a case)
   and ``call_events`` kinds find them all due; plus 50 live calls that webhooks write to.
2. The sweep runs (batch 200, the shipped default) while a thread writes as a webhook does, every
   ``--every-ms`` (default 10): one short write transaction that updates a live call's IVR state and adds
   one call event. Each write is timed from asking for the transaction to its commit.

Modes, side by side:

- ``before``: the sweep as it was (each batch's transaction ran the due query, with its whole-table scan,
  under the write lock, then erased row by row: a get and an UPDATE or DELETE per row);
- ``after``: cases.retention.sweep.RetentionSweep as it is: the due ids read outside the write lock, each
  batch checked again by id and erased with a few set-based statements, and a pause between batches
  (``--pause-ms``, default app.RETENTION_PAUSE_S) that lets queued webhooks go first.

Printed: the sweep's wall time and rows erased, and the webhook-like writes' count, p50, p99 and max
(ms), and how many took longer than 250 ms and 1 s (the webhook's database budget is 4 s).
``--json`` prints the same as JSON.

The ``before`` sweep slows down as it goes (each batch's due query scans past the rows already
erased), so at 20,000 calls it takes far longer than ``after``; ``--modes after`` runs one side only.

Usage (from the repo root)::

    .venv/bin/python bench/retention_sweep.py [--calls 20000] [--events 5] [--modes before,after] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from figures import log, summary  # also puts the repo root on sys.path
from sqlalchemy import insert, select, update

from app import RETENTION_PAUSE_S, upgrade_database
from cases.audit import unlocked
from cases.models import Call, CallEvent
from cases.retention import RetentionSettings, RetentionSweep
from cases.retention.sweep import PURPOSE, UNLOCKING, _erase_call_number, erase_call_path
from infra.clock import utcnow
from infra.db import Database

SETTINGS = RetentionSettings(
    caller_numbers=30, recordings=90, call_events=180, notifications=90, audit=1825, drafts=60, batch=200
)
LIVE_CALLS = 50


class RowByRowSweep(RetentionSweep):
    """The sweep before this change: the due query under the write lock, then a statement or two per row."""

    def _kind(self, kind: str, index: int, query: Any, now: datetime) -> int:
        total = 0
        while True:
            with self.db.writing() as session:
                ids = [
                    row[0] for row in session.execute(query(now, self.settings).limit(self.settings.batch))
                ]
                if not ids:
                    return total
                if kind in UNLOCKING:
                    with unlocked(session, f"{PURPOSE} {kind}", None, clock=self.clock):
                        self._rows(session, kind, index, ids, now)
                else:
                    self._rows(session, kind, index, ids, now)
            total += len(ids)

    @staticmethod
    def _rows(session: Any, kind: str, index: int, ids: list[int], now: datetime) -> None:
        for row_id in ids:
            if kind == "caller_numbers" and index == 1:
                _erase_call_number(session.get_one(Call, row_id))
            elif kind == "call_events":
                erase_call_path(session, session.get_one(Call, row_id), now)
            else:
                raise AssertionError(f"the bench fills no {kind}")


def _fill(db: Database, calls: int, events: int, old: datetime) -> list[int]:
    """The due calls (caseless, with a number and a menu path) and the live calls; the live ids."""
    with db.writing() as session:
        for start in range(0, calls, 5000):
            rows = [
                {
                    "call_sid": f"CAold{n:08d}", "status": "completed", "caller_number_enc": "gAAAA-sealed",
                    "caller_number_masked": "08x xxx x123", "language": "th", "ivr_state": {"step": 3},
                    "seq": 3, "created_at": old, "updated_at": old,
                }
                for n in range(start, min(start + 5000, calls))
            ]  # fmt: skip
            session.execute(insert(Call), rows)
        due = list(session.scalars(select(Call.id)))
        for start in range(0, len(due), 2000):
            session.execute(
                insert(CallEvent),
                [
                    {
                        "call_id": call_id,
                        "at": old,
                        "node": "main_menu",
                        "kind": "key",
                        "detail": {"key": "1"},
                    }
                    for call_id in due[start : start + 2000]
                    for _ in range(events)
                ],
            )
        now = utcnow()
        session.execute(
            insert(Call),
            [
                {"call_sid": f"CAlive{n:04d}", "status": "in-progress", "ivr_state": {}, "seq": 0,
                 "language": "th", "created_at": now, "updated_at": now}
                for n in range(LIVE_CALLS)
            ],
        )  # fmt: skip
        return list(session.scalars(select(Call.id).where(Call.status == "in-progress")))


def _webhooks(db: Database, live: list[int], every_s: float, stop: threading.Event, out: list[float]) -> None:
    """Write as a webhook does until stopped: one short transaction per step of a live call, timed."""
    n = 0
    while not stop.is_set():
        call_id = live[n % len(live)]
        n += 1
        began = time.perf_counter()
        with db.writing() as session:
            session.execute(update(Call).where(Call.id == call_id).values(ivr_state={"step": n}, seq=n))
            session.execute(
                insert(CallEvent).values(
                    call_id=call_id, at=utcnow(), node="main_menu", kind="key", detail={}
                )
            )
        out.append((time.perf_counter() - began) * 1000)
        stop.wait(every_s)


def run_mode(
    make: Callable[[Database], RetentionSweep], args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    url = f"sqlite:///{folder / 'hotline.db'}"
    upgrade_database(url)
    db = Database(url)
    try:
        live = _fill(db, args.calls, args.events, utcnow() - timedelta(days=400))
        latencies: list[float] = []
        stop = threading.Event()
        writer = threading.Thread(target=_webhooks, args=(db, live, args.every_ms / 1000, stop, latencies))
        writer.start()
        time.sleep(0.5)  # the writer's steady state before the sweep starts
        began = time.perf_counter()
        done = make(db).sweep()
        took = time.perf_counter() - began
        time.sleep(0.3)
        stop.set()
        writer.join()
        assert done["caller_numbers"] == args.calls and done["call_events"] == args.calls, done
        return {
            "sweep_s": round(took, 2),
            "erased": {"caller_numbers": done["caller_numbers"], "call_events": done["call_events"]},
            "webhook_writes": summary(latencies),
            "over_250ms": sum(1 for ms in latencies if ms > 250),
            "over_1s": sum(1 for ms in latencies if ms > 1000),
        }
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--every-ms", type=float, default=10.0)
    parser.add_argument("--pause-ms", type=float, default=RETENTION_PAUSE_S * 1000)
    parser.add_argument("--modes", default="before,after", help="before, after or both (the default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes: dict[str, Callable[[Database], RetentionSweep]] = {
        "before": lambda db: RowByRowSweep(db, SETTINGS, None),
        "after": lambda db: RetentionSweep(db, SETTINGS, None, pause_s=args.pause_ms / 1000),
    }
    results: dict[str, Any] = {}
    for name, make in modes.items():
        if name not in args.modes.split(","):
            continue
        log(f"{name}: {args.calls} due calls with {args.events} events each ...")
        with tempfile.TemporaryDirectory(prefix="retention-bench-") as tmp:
            results[name] = run_mode(make, args, Path(tmp))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"retention sweep over {args.calls} due calls ({args.events} events each), SQLite, batch 200")
    print(f"{'':28}" + "".join(f"{name:>12}" for name in results))
    rows = [
        ("sweep wall time (s)", lambda r: r["sweep_s"]),
        ("webhook writes", lambda r: r["webhook_writes"]["count"]),
        ("webhook write p50 (ms)", lambda r: r["webhook_writes"]["p50_ms"]),
        ("webhook write p99 (ms)", lambda r: r["webhook_writes"]["p99_ms"]),
        ("webhook write max (ms)", lambda r: r["webhook_writes"]["max_ms"]),
        ("writes over 250 ms", lambda r: r["over_250ms"]),
        ("writes over 1 s", lambda r: r["over_1s"]),
    ]
    for label, get in rows:
        print(f"{label:28}" + "".join(f"{get(r):>12}" for r in results.values()))


if __name__ == "__main__":
    main()
