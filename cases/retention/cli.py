"""`flask --app app retention plan|sweep`: the dry run (counts by kind and office) and a run by hand."""

from __future__ import annotations

from collections.abc import Callable

import click

from cases.retention.rules import KINDS, plan
from cases.retention.settings import RetentionSettings
from cases.retention.sweep import RetentionSweep
from infra.clock import utcnow
from infra.db import Database
from infra.sweeps import SweepReport


def retention_group(
    database: Callable[[], Database],
    settings: Callable[[], RetentionSettings],
    sweep: Callable[[], RetentionSweep],
) -> click.Group:
    @click.group("retention")
    def group() -> None:
        """Retention of personal data (README "Retention")."""

    @group.command("plan")
    def plan_cmd() -> None:
        """Print what the next sweep would erase, by kind and office: counts only, nothing is changed."""
        chosen = settings()
        session = database().read_session()
        try:
            rows = plan(session, utcnow(), chosen)
        finally:
            session.close()
        for kind in KINDS:
            mine = [r for r in rows if r.kind == kind]
            click.echo(f"{kind} (after {chosen.days(kind)} days): {sum(r.count for r in mine)}")
            for row in mine:
                click.echo(f"  office {row.office}: {row.count}")

    @group.command("sweep")
    def sweep_cmd() -> None:
        """Erase now what is past its period (what the worker does every night)."""
        report = SweepReport()
        sweep().sweep(report)
        click.echo(f"retention: {report.summary()}")
        for line in report.faults:
            click.echo(f"  {line}")
        if report.faults:
            raise SystemExit(1)

    return group
