"""The `simulate-call` and `demo` commands: call the hotline through the simulator and show the case."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from cases.export import case_record
from cases.models import Call
from infra.config import Config
from infra.db import Database
from telephony.simulator import CallEvent, CallScript, ScriptError, SimulatorConfig, run_call

DEMO_KEYS = "1,10,1,1,record:6,1"


@contextmanager
def serve_in_thread(app: Flask, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the app on a local port for the duration of the block; yields its base URL."""
    # The simulator prints every step; werkzeug's access log would only repeat it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="hotline-web", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def simulate_call(
    app: Flask,
    *,
    connect_base: str | None,
    keys: str,
    from_number: str,
    wav: Path | None,
    quiet: bool,
) -> int:
    """Place one simulated call; print what the caller hears and the case it opened. Returns an exit code."""
    cfg: Config = app.config["HOTLINE"]
    input_fn: Callable[[str], str] | None = None
    if not keys and sys.stdin.isatty():

        def ask(question: str) -> str:
            return str(click.prompt(question, default="-", show_default=False))

        input_fn = ask

    try:
        script = CallScript.parse(keys, input_fn=input_fn)
    except ScriptError as exc:
        raise click.UsageError(f"--keys: {exc}") from exc

    def show(event: CallEvent) -> None:
        if not quiet and event.kind != "request":
            click.echo("  " + event.describe())

    def place(base: str) -> int:
        sim = SimulatorConfig(
            connect_base=base,
            public_base=cfg.public_base_url,
            account_sid=cfg.twilio_account_sid,
            auth_token=cfg.twilio_auth_token,
            from_number=from_number,
        )
        result = run_call(sim, script, on_event=show, recording_wav=wav.read_bytes() if wav else None)
        click.echo(f"call {result.call_sid} ended: {result.ended_by}")
        for err in result.errors():
            click.echo(f"error: {err.describe()}", err=True)
        return _print_case(app, result.call_sid) if not result.errors() else 1

    if connect_base:
        return place(connect_base.rstrip("/"))
    with serve_in_thread(app) as base:
        return place(base)


def _print_case(app: Flask, call_sid: str) -> int:
    db: Database = app.extensions["hotline.db"]
    with db.session() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        if call is None or call.case is None:
            click.echo("no case was opened by this call")
            return 0
        click.echo("draft case:")
        click.echo(json.dumps(case_record(call.case), ensure_ascii=False, indent=2))
    return 0
