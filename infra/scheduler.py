"""The worker's APScheduler: it decides when sweeps run; the database rows decide what is due."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sweep:
    """A periodic job: an explicit id, a bound function that takes no arguments, an interval."""

    id: str
    func: Callable[[], object]
    seconds: float


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


def add_sweeps(scheduler: BaseScheduler, sweeps: list[Sweep]) -> None:
    for sweep in sweeps:
        scheduler.add_job(
            _guarded(sweep),
            "interval",
            seconds=sweep.seconds,
            id=sweep.id,
            name=sweep.id,
            replace_existing=True,
        )


def _guarded(sweep: Sweep) -> Callable[[], None]:
    def run() -> None:
        try:
            sweep.func()
        except Exception:
            # One failing sweep must not stop the others; it runs again at its next interval.
            log.exception("sweep %s failed", sweep.id)

    run.__name__ = run.__qualname__ = sweep.id.replace(".", "_")
    return run
