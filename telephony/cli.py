"""Command-line faces of telephony: `flows check`, `simulate-call`, `spool replay` and the `demo`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from infra.config import Config
from infra.db import Database
from telephony import jobs as telephony_jobs
from telephony.flow import FlowError, FlowUnreadable, load_flow
from telephony.webhooks import telephony


def command_groups(database: Callable[[], Database]) -> list[click.Command]:
    """The commands, run in the app's context (the configuration and Telephony are the app's)."""
    return [_flows_group(), _simulate_call_command(), _spool_group(database), _demo_command(database)]


def _config() -> Config:
    cfg: Config = current_app.config["HOTLINE"]
    return cfg


def _flows_group() -> click.Group:
    @click.group("flows", cls=AppGroup)
    def flows_group() -> None:
        """IVR flow files."""

    @flows_group.command("check")
    @click.argument("paths", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
    def flows_check(paths: tuple[Path, ...]) -> None:
        """Check flow files (default: the configured one), every prompt spoken with sample values.

        Each error is one line naming the file, node and field. Exit 1 if a flow is wrong, 2 if a file
        cannot be read as text at all (missing, unreadable, not UTF-8).
        """
        code = 0
        for path in paths or (_config().flow_file,):
            try:
                flow = load_flow(path)
            except FlowError as exc:
                click.echo(f"error: {exc}", err=True)
                code = max(code, 2 if isinstance(exc, FlowUnreadable) else 1)
            else:
                click.echo(f"ok: {path} (flow {flow.name!r}, {len(flow.nodes)} nodes)")
        if code:
            sys.exit(code)

    return flows_group


def _simulate_call_command() -> click.Command:
    @click.command("simulate-call")
    @click.option("--url", "connect_base", default=None, help="A running app to call (default: start one).")
    @click.option("--keys", default="", help="The caller's inputs, e.g. '1,10,1,1,record:5,1'.")
    @click.option("--from", "from_number", default="+66812345678", show_default=True)
    @click.option("--wav", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
    @click.option("--quiet", is_flag=True, help="Print only the outcome.")
    @click.option(
        "--hangup-order",
        default=None,
        help="When the caller hangs up while recording (record:8:hangup, record:8:#:hangup): the order "
        "the action, recording and status requests arrive in, e.g. 'action,status,recording', "
        "'status' (the others lost) or 'concurrent'.",
    )
    @with_appcontext
    def simulate_call_cmd(
        connect_base: str | None,
        keys: str,
        from_number: str,
        wav: Path | None,
        quiet: bool,
        hangup_order: str | None,
    ) -> None:
        """Call the hotline as Twilio would: signed webhooks, TwiML followed, a recording served."""
        from telephony.simulator.commands import simulate_call

        code = simulate_call(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            connect_base=connect_base,
            keys=keys,
            from_number=from_number,
            wav=wav,
            quiet=quiet,
            hangup_order=hangup_order,
        )
        sys.exit(code)

    return simulate_call_cmd


def _spool_group(database: Callable[[], Database]) -> click.Group:
    @click.group("spool", cls=AppGroup)
    def spool_group() -> None:
        """Rescue messages kept on disk while the database was down."""

    @spool_group.command("replay")
    def spool_replay() -> None:
        """Store spooled rescue messages with cases now (the worker also does it every minute)."""
        tel = telephony(current_app)
        waiting = len(telephony_jobs.spool_files(tel.spool_dir))
        stored = telephony_jobs.replay_spool(database(), tel)
        click.echo(f"spool: {stored} of {waiting} stored with a case")
        if stored < waiting:
            sys.exit(1)

    return spool_group


def _demo_command(database: Callable[[], Database]) -> click.Command:
    @click.command("demo")
    @click.option(
        "--keys", default=None, help="The caller's inputs (default: a violence report from Bangkok)."
    )
    @with_appcontext
    def demo(keys: str | None) -> None:
        """Quick start: migrate the embedded database, load offices, serve, place one simulated call."""
        from cases.offices import load_offices
        from migrations import upgrade_database
        from telephony.simulator.commands import DEMO_KEYS, run_demo

        cfg = _config()
        click.echo(f"database: {cfg.database_url}")
        upgrade_database(cfg.database_url)
        with database().session() as session:
            report = load_offices(session)
        click.echo(f"offices: {report.total}")
        keys = keys or DEMO_KEYS
        click.echo(f"starting the worker; calling the hotline as a caller who keys {keys!r}:")
        sys.exit(run_demo(current_app._get_current_object(), keys))  # type: ignore[attr-defined]

    return demo
