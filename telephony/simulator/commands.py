"""The `simulate-call` and `demo` commands: call the hotline through the simulator and show the case."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from cases.export import case_record
from cases.models import Call, Case
from infra.config import Config
from infra.db import database
from telephony.simulator.config import SimulatorConfig
from telephony.simulator.events import CallEvent, CallResult
from telephony.simulator.media_server import MediaServer
from telephony.simulator.run import run_call
from telephony.simulator.script import DEFAULT_HANGUP_ORDER, CallScript, HangupOrder, ScriptError
from transcription.models import Recording, StorageStatus, TranscriptStatus

DEMO_KEYS = "1,10,1,1,record:6,1"
# The demo caller's message: a real Thai speaker (a Common Voice clip, CC0; see data/README.md) as Twilio
# records a phone line, so the quick start shows a Thai transcript, not a tone's `no_speech`.
DEMO_MESSAGE = Path(__file__).resolve().parent / "data" / "demo-message-th.wav"


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
    media: MediaServer | None = None,
    wait_for_transcript_s: float = 0.0,
    hangup_order: HangupOrder | str | None = None,
) -> int:
    """Place one simulated call; print what the caller hears and the case it opened. Returns an exit code.

    `hangup_order` (see HangupOrder; text such as "status,action,recording" or "concurrent") says how
    the end-of-call requests arrive when the caller hangs up with a recording outstanding.
    """
    cfg: Config = app.config["HOTLINE"]
    try:
        order = HangupOrder.of(hangup_order) if hangup_order is not None else DEFAULT_HANGUP_ORDER
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--hangup-order") from exc
    script = _script(keys)

    def show(event: CallEvent) -> None:
        # Requests repeat what the caller hears, except the end of the call, where they are the story.
        if not quiet and (event.kind != "request" or event.order is not None):
            click.echo("  " + event.describe())

    def place(base: str) -> int:
        sim = SimulatorConfig(
            connect_base=base,
            public_base=cfg.public_base_url,
            account_sid=cfg.twilio_account_sid,
            auth_token=cfg.twilio_auth_token,
            from_number=from_number,
            hangup_order=order,
        )
        result = run_call(
            sim, script, media=media, on_event=show, recording_wav=wav.read_bytes() if wav else None
        )
        return _report(app, result, order, wait_for_transcript_s)

    if connect_base:
        return place(connect_base.rstrip("/"))
    with serve_in_thread(app) as base:
        return place(base)


def _script(keys: str) -> CallScript:
    """The caller's keys; with none given on a terminal, the caller is asked at each prompt."""
    input_fn: Callable[[str], str] | None = None
    if not keys and sys.stdin.isatty():

        def ask(question: str) -> str:
            return str(click.prompt(question, default="-", show_default=False))

        input_fn = ask

    try:
        return CallScript.parse(keys, input_fn=input_fn)
    except ScriptError as exc:
        raise click.UsageError(f"--keys: {exc}") from exc


def _report(app: Flask, result: CallResult, order: HangupOrder, wait_for_transcript_s: float) -> int:
    """How the call ended, its errors, and the case it opened (once the worker is done, if asked)."""
    click.echo(f"call {result.call_sid} ended: {result.ended_by}")
    _print_end_of_call(result, order)
    for err in result.errors():
        click.echo(f"error: {err.describe()}", err=True)
    if result.errors():
        return 1
    if wait_for_transcript_s > 0:
        _wait_for_transcript(app, result.call_sid, wait_for_transcript_s)
    return _print_case(app, result.call_sid)


def _print_end_of_call(result: CallResult, order: HangupOrder) -> None:
    """After a hang-up with a recording outstanding: the requests the app got, in order, and its answers."""
    notes = result.of_kind("end-of-call")
    if not notes:
        return
    sent = [
        f"{e.order}. {e.purpose} -> {e.status if e.status is not None else 'no answer'}"
        for e in result.end_of_call()
    ]
    click.echo(f"end of call (hang-up order {order}): {', '.join(sent) or 'nothing sent'}")
    for note in notes[1:]:  # the first one announces the order; the others name what never came
        click.echo(f"  {note.text}")


def _wait_for_transcript(app: Flask, call_sid: str, timeout_s: float) -> None:
    """Wait until the worker has stored the recording and finished (or given up on) its transcript."""
    db = database(app)
    click.echo("waiting for the worker to download and transcribe the message …")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with db.read_session() as session:
            rec = session.scalar(
                select(Recording).where(Recording.call_sid == call_sid).order_by(Recording.id.desc())
            )
            if rec is not None and (
                rec.storage_status in (StorageStatus.UNAVAILABLE, StorageStatus.ABSENT)
                or (rec.transcript is not None and rec.transcript.status != TranscriptStatus.QUEUED)
            ):
                return
        time.sleep(0.5)
    click.echo(f"the worker did not finish within {timeout_s:.0f} s; the case is shown as it stands")


def run_demo(app: Flask, keys: str, *, worker_timeout_s: float = 120.0) -> int:
    """The quick start: the worker beside the web app, one simulated call, the case with its transcript."""
    cfg: Config = app.config["HOTLINE"]
    with MediaServer(cfg.twilio_account_sid, cfg.twilio_auth_token) as media:
        env = dict(os.environ)
        env.update(
            TWILIO_API_BASE=media.base_url,  # the worker fetches the simulated recording from here
            HOTLINE_INSTANCE_DIR=str(cfg.instance_dir),
            DATABASE_URL=cfg.database_url,
            HOTLINE_SWEEP_SECONDS="0.5",
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker"],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
        )
        try:
            return simulate_call(
                app,
                connect_base=None,
                keys=keys,
                from_number="+66812345678",
                wav=DEMO_MESSAGE,
                quiet=False,
                media=media,
                wait_for_transcript_s=worker_timeout_s,
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()


def _print_case(app: Flask, call_sid: str) -> int:
    db = database(app)
    with db.read_session() as session:
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        if call is None or call.case is None:
            # A follow-up call opens no case: its message went to the case the caller keyed.
            followed = session.scalar(
                select(Case)
                .join(Recording, Recording.case_id == Case.id)
                .where(Recording.call_sid == call_sid)
                .limit(1)
            )
            if followed is None:
                click.echo("no case was opened by this call")
                return 0
            click.echo("message added to case:")
            click.echo(json.dumps(case_record(followed), ensure_ascii=False, indent=2))
            return 0
        click.echo("draft case:")
        click.echo(json.dumps(case_record(call.case), ensure_ascii=False, indent=2))
    return 0
