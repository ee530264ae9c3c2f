"""`worker --once` (infra.scheduler.run_once): what each sweep did, every fault, and the exit status."""

from __future__ import annotations

import pytest

from infra.scheduler import Sweep, run_once
from infra.sweeps import SweepReport


class Downloads:
    """A sweep that reports, standing in for TranscriptionJobs.sweep_downloads."""

    def __init__(self, faults: list[str]) -> None:
        self.faults = faults
        self.calls: list[SweepReport | None] = []

    def __call__(self, report: SweepReport | None = None) -> int:
        self.calls.append(report)
        report = report if report is not None else SweepReport()
        report.expect("stored", "failed")
        report.count("stored", 2)
        for line in self.faults:
            report.fault("failed", line)
        return 2 + len(self.faults)


def broken() -> int:
    raise RuntimeError("the database went away at 0812345678")


def run(sweeps: list[Sweep]) -> tuple[int, list[str]]:
    lines: list[str] = []
    return run_once(sweeps, lines.append), lines


def test_a_clean_run_says_what_each_sweep_did_and_exits_0() -> None:
    downloads = Downloads([])
    code, lines = run([Sweep.reporting("downloads", downloads, 1.0), Sweep("outbox", lambda: 3, 1.0)])
    assert (code, lines) == (0, ["downloads: 2 stored, 0 failed", "outbox: 3 done"])
    assert isinstance(downloads.calls[0], SweepReport)  # --once hands the sweep its report


def test_every_fault_is_printed_and_the_exit_status_says_so(caplog: pytest.LogCaptureFixture) -> None:
    downloads = Downloads(
        ["recording 12: cannot write /x/recordings (permission denied)", "recording 13: http 500"]
    )
    code, lines = run(
        [
            Sweep("spool", broken, 1.0),
            Sweep.reporting("downloads", downloads, 1.0),
            Sweep("idle", lambda: None, 1.0),
        ]
    )
    assert code == 1
    assert lines == [
        "spool: 1 stopped",
        "  RuntimeError (see the log)",  # the message itself may hold anything: only the log has it
        "downloads: 2 stored, 2 failed",
        "  recording 12: cannot write /x/recordings (permission denied)",
        "  recording 13: http 500",
        "idle: nothing to do",  # the sweeps after a failing one still run
    ]
    assert [r.getMessage() for r in caplog.records] == ["sweep spool failed"]


def test_the_scheduler_calls_a_reporting_sweep_without_a_report() -> None:
    downloads = Downloads([])
    sweep = Sweep.reporting("downloads", downloads, 1.0)
    assert sweep.func() == 2
    assert downloads.calls == [None]
