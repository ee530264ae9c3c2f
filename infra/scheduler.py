"""The worker's APScheduler: it decides when sweeps run; the database rows decide what is due."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import time
from typing import Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from infra.sweeps import SweepReport

log = logging.getLogger(__name__)


class ReportingFunc(Protocol):
    """A sweep function that fills the SweepReport it is given (the scheduler gives none)."""

    def __call__(self, report: SweepReport | None = None) -> object: ...


@dataclass(frozen=True)
class Sweep:
    """A periodic job: an explicit id, a bound function that takes no arguments, an interval.

    `report`, when given, runs the same sweep filling a SweepReport: `worker --once` prints it.
    `at`, when given, runs it once a day at that wall time of the scheduler's time zone instead.
    """

    id: str
    func: Callable[[], object]
    seconds: float
    report: Callable[[SweepReport], object] | None = None
    at: time | None = None

    @classmethod
    def reporting(cls, id: str, func: ReportingFunc, seconds: float) -> Sweep:
        """A sweep whose function also fills a SweepReport: the one function serves both ways."""
        return cls(id, func, seconds, report=func)

    @classmethod
    def daily(cls, id: str, func: ReportingFunc, at: time) -> Sweep:
        """A reporting sweep run once a day at `at` (a cron trigger in the scheduler's time zone)."""
        return cls(id, func, 24 * 60 * 60, report=func, at=at)


def build_scheduler(timezone: str, sweeps: list[Sweep], *, threads: int = 4) -> BlockingScheduler:
    """A scheduler in the configured time zone running each sweep on its interval.

    The job store is in memory on purpose: the sweeps are registered again at every start, and all work
    lives in database rows, so there is nothing to persist and nothing (no personal data) is pickled.
    A sweep that falls due while another run of it is going is coalesced into one run; a run that is
    late (a busy or restarted worker) still runs (misfire_grace_time=None), so no work is skipped.
    """
    scheduler = BlockingScheduler(
        timezone=timezone,
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=threads)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    add_sweeps(scheduler, sweeps)
    return scheduler


def run_once(sweeps: list[Sweep], echo: Callable[[str], None]) -> int:
    """Run every sweep once, in order; print what each did and every fault it met. 1 if any met one.

    For cron and for an operator at the terminal: a fault shows in the output and in the exit status,
    not only in a log. A sweep that raises is a fault too, and the sweeps after it still run.
    """
    faulty = False
    for sweep in sweeps:
        report = SweepReport()
        try:
            if sweep.report is not None:
                sweep.report(report)
            else:
                result = sweep.func()
                if isinstance(result, int):
                    report.count("done", result)
        except Exception as exc:
            log.exception("sweep %s failed", sweep.id)
            report.fault("stopped", f"{type(exc).__name__} (see the log)")
        echo(f"{sweep.id}: {report.summary()}")
        for line in report.faults:
            echo(f"  {line}")
        faulty = faulty or bool(report.faults)
    return 1 if faulty else 0


def add_sweeps(scheduler: BaseScheduler, sweeps: list[Sweep]) -> None:
    for sweep in sweeps:
        if sweep.at is not None:
            # A cron trigger takes the scheduler's time zone: the wall time of HOTLINE_TIMEZONE.
            when: dict[str, object] = {"trigger": "cron", "hour": sweep.at.hour, "minute": sweep.at.minute}
        else:
            when = {"trigger": "interval", "seconds": sweep.seconds}
        scheduler.add_job(_guarded(sweep), id=sweep.id, name=sweep.id, replace_existing=True, **when)


def _guarded(sweep: Sweep) -> Callable[[], None]:
    def run() -> None:
        try:
            sweep.func()
        except Exception:
            # One failing sweep must not stop the others; it runs again at its next interval.
            log.exception("sweep %s failed", sweep.id)

    run.__name__ = run.__qualname__ = sweep.id.replace(".", "_")
    return run
