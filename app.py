"""The application factory and the `flask --app app` command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from flask import Flask, Response, current_app
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cases import callbacks, notifications
from cases.callbacks.settings import CallbackSettings, load_callback_settings
from cases.models import Office
from cases.staff import User
from console import wiring as console
from infra.config import Config, ConfigError
from infra.crypto import FieldCipher
from infra.db import Database, database
from infra.files import make_private_dirs, tighten
from infra.logs import configure_logging
from infra.scheduler import Sweep, build_scheduler, run_once
from telephony import bridge, bridge_webhooks, twiml, webhooks
from telephony import jobs as telephony_jobs
from telephony.flow import FlowError, load_flow
from telephony.reconcile import Reconciler, ReconcileSettings
from telephony.rest import TwilioRest
from telephony.service import Telephony
from transcription.cli import models_list_command, transcribe_command
from transcription.jobs import JobSettings, TranscriptionJobs
from transcription.media import MediaClient
from transcription.pool import TranscriberPool
from transcription.registry import ModelError, ModelSpecError, discover_models, parse_model_spec

ROOT = Path(__file__).resolve().parent
MIGRATIONS_DIR = ROOT / "migrations"
AUDIO_DIR = ROOT / "ivr_flows" / "audio"
log = logging.getLogger("hotline")


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the web app: configuration, database, flow, webhooks and commands. Nothing at import time."""
    cfg = config if isinstance(config, Config) else Config.from_env(env=dict(config or {}))
    flow = load_flow(cfg.flow_file)  # a broken flow stops the start, naming file, node and field

    app = Flask(__name__, instance_path=str(cfg.instance_dir))
    app.config.update(SECRET_KEY=cfg.secret_key, HOTLINE=cfg, MAX_CONTENT_LENGTH=256 * 1024)
    https = cfg.public_base_url.startswith("https://")
    app.config.update(
        # __Host-: only ever sent to this host over https, for the whole site.
        SESSION_COOKIE_NAME="__Host-hotline" if https else "hotline",
        SESSION_COOKIE_SECURE=https,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # The session's own lifetimes bound the token; an hour-long summary must not lose its form.
        WTF_CSRF_TIME_LIMIT=None,
    )
    for folder in (cfg.instance_dir, cfg.data_dir):
        make_private_dirs(folder)
        tighten(folder)

    # A broken callbacks or holidays file stops the start too (a ConfigError naming file and field).
    callback_settings = load_callback_settings(cfg.callbacks_file, cfg.holidays_file, cfg.timezone_name)

    db = Database(cfg.database_url)
    database.install(app, db)
    callbacks.callback_settings.install(app, callback_settings)
    # What notify() may queue on: the channels configured here and the offices' LINE groups.
    notifications.install_targets(db, notifications.DeliveryTargets.from_config(cfg, callback_settings.line))
    tel = Telephony(
        flow=flow,
        voices=twiml.Voices(cfg.public_base_url, cfg.voice_th, cfg.voice_en),
        cipher=FieldCipher(cfg.data_key),
        transfer_number=cfg.transfer_number,
        spool_dir=cfg.spool_dir,
        callbacks=callback_settings,
        db_budget_s=cfg.webhook_db_budget_s,
    )
    webhooks.init_app(app, tel, str(AUDIO_DIR))
    # The call-back bridge: the operator's phone rings, then the reporter's, under the hotline's number.
    call_bridge = bridge.Bridge(
        voices=tel.voices, cipher=tel.cipher, hotline_number=cfg.hotline_number, settings=callback_settings
    )
    bridge_webhooks.init_app(app, call_bridge)

    # Every form carries a CSRF token; Twilio's webhooks are exempt because their signature protects them.
    csrf = CSRFProtect(app)
    csrf.exempt(webhooks.bp)
    csrf.exempt(bridge_webhooks.bp)
    rest = TwilioRest(cfg.twilio_api_base, cfg.twilio_account_sid, cfg.twilio_auth_token)
    dialer = bridge.TwilioDialer(rest, call_bridge.url, cfg.hotline_number)
    console.init_app(app, FieldCipher(cfg.data_key), dialer)

    @app.get("/healthz")
    def healthz() -> Response:
        with db.reading() as conn:  # the writers' engine would BEGIN IMMEDIATE: a probe must not queue
            conn.execute(text("SELECT 1"))
        return Response("ok\n", mimetype="text/plain")

    _register_commands(app)
    if cfg.dev_credentials and not app.testing:
        log.info("TWILIO_AUTH_TOKEN not set: using the local development token; real Twilio requests get 403")
    return app


def get_database(app: Flask | None = None) -> Database:
    return database(app or current_app)


def upgrade_database(url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations to the database at `url`."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    alembic_cfg = AlembicConfig()
    alembic_cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    alembic_cfg.attributes["database_url"] = url
    command.upgrade(alembic_cfg, revision)


def _register_commands(app: Flask) -> None:
    @app.cli.group("db")
    def db_group() -> None:
        """Database schema."""

    @db_group.command("upgrade")
    def db_upgrade() -> None:
        """Apply the migrations (idempotent)."""
        cfg: Config = current_app.config["HOTLINE"]
        upgrade_database(cfg.database_url)
        click.echo("database is at the latest revision")

    @app.cli.group("offices")
    def offices_group() -> None:
        """Safety Center offices."""

    @offices_group.command("load")
    def offices_load() -> None:
        """Load the central, 77 provincial and 928 district offices from geothai (idempotent)."""
        from cases.offices import load_offices

        with get_database().session() as session:
            report = load_offices(session)
        click.echo(f"offices: {report.total} in all, {report.created} created, {report.updated} updated")

    @app.cli.group("flows")
    def flows_group() -> None:
        """IVR flow files."""

    @flows_group.command("check")
    @click.argument("paths", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
    def flows_check(paths: tuple[Path, ...]) -> None:
        """Check flow files (default: the configured one); exit 1 naming file, node and field."""
        cfg: Config = current_app.config["HOTLINE"]
        failed = False
        for path in paths or (cfg.flow_file,):
            try:
                flow = load_flow(path)
            except FlowError as exc:
                click.echo(f"error: {exc}", err=True)
                failed = True
            else:
                click.echo(f"ok: {path} (flow {flow.name!r}, {len(flow.nodes)} nodes)")
        if failed:
            sys.exit(1)

    @app.cli.group("cases")
    def cases_group() -> None:
        """Cases."""

    @cases_group.command("export")
    @click.option("--format", "fmt", type=click.Choice(["json"]), default="json", show_default=True)
    def cases_export(fmt: str) -> None:
        """Print every case as one JSON array (numbers masked)."""
        from cases.export import iter_case_records

        out = sys.stdout
        # Read-only, in one snapshot: an export of many cases never holds up a caller's webhook.
        with get_database().read_session() as session:
            out.write("[")
            for i, record in enumerate(iter_case_records(session)):
                out.write(("," if i else "") + "\n  " + json.dumps(record, ensure_ascii=False))
            out.write("\n]\n")

    @app.cli.group("users")
    def users_group() -> None:
        """Staff accounts and their roles (the first admin is made here)."""

    @users_group.command("create")
    @click.argument("username")
    @click.option("--name", "display_name", required=True, help="The person's name as staff see it.")
    @click.option("--email", default=None)
    @click.option("--locale", type=click.Choice(["th", "en"]), default="th", show_default=True)
    @click.option("--phone", default=None, help="The person's own phone (E.164, or Thai national).")
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
    def users_create(
        username: str,
        display_name: str,
        email: str | None,
        locale: str,
        phone: str | None,
        password_stdin: bool,
    ) -> None:
        """Create a staff account; give it roles with `users grant`."""
        from cases.accounts import AccountError, create_user

        password = _read_password(password_stdin)
        with get_database().session() as session:
            try:
                user = create_user(
                    session, username, display_name, password, locale=locale, email=email, phone=phone
                )
            except AccountError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"created user {user.username} (id {user.id})")

    @users_group.command("password")
    @click.argument("username")
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
    def users_password(username: str, password_stdin: bool) -> None:
        """Set a new password; unlocks the account and ends all its sessions."""
        from cases.accounts import AccountError, set_password

        password = _read_password(password_stdin)
        with get_database().session() as session:
            user = _user(session, username)
            try:
                set_password(session, user, password)
            except AccountError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"password of {user.username} changed; its sessions are ended")

    @users_group.command("phone")
    @click.argument("username")
    @click.argument("number")
    def users_phone(username: str, number: str) -> None:
        """Set the person's own phone (the call-back bridge rings it, SMS goes to it); "" removes it."""
        from cases.accounts import AccountError, set_phone

        with get_database().session() as session:
            user = _user(session, username)
            try:
                set_phone(session, user, number)
            except AccountError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"phone of {user.username} {'set' if user.phone else 'removed'}")

    @users_group.command("grant")
    @click.argument("username")
    @click.argument("role", type=click.Choice(["agent", "operator", "head", "action", "admin"]))
    @click.argument("office_code")
    def users_grant(username: str, role: str, office_code: str) -> None:
        """Give USERNAME the ROLE at the office OFFICE_CODE (central, 2-digit province, 4-digit district)."""
        _change_role(username, role, office_code, grant=True)

    @users_group.command("revoke")
    @click.argument("username")
    @click.argument("role", type=click.Choice(["agent", "operator", "head", "action", "admin"]))
    @click.argument("office_code")
    def users_revoke(username: str, role: str, office_code: str) -> None:
        """Take the ROLE at OFFICE_CODE away from USERNAME."""
        _change_role(username, role, office_code, grant=False)

    def _change_role(username: str, role: str, office_code: str, *, grant: bool) -> None:
        from cases import office_staff, workflow
        from cases.staff import Role

        change = office_staff.grant_role if grant else office_staff.revoke_role
        with get_database().session() as session:
            user, office = _user(session, username), _office(session, office_code)
            try:
                change(session, office, user, Role(role), actor=None)
            except workflow.WorkflowError as exc:
                raise click.ClickException(str(exc)) from exc
            if grant:
                click.echo(f"{user.username} is now {role} at {office.code} ({office.name_en})")
            else:
                click.echo(f"{user.username} is no longer {role} at {office.code}")

    @users_group.command("list")
    def users_list() -> None:
        """Every account with its roles (role@office) and whether it is locked."""
        from cases.staff import RoleAssignment
        from infra.clock import utcnow

        with get_database().read_session() as session:
            roles: dict[int, list[str]] = {}
            for user_id, role, code in session.execute(
                select(RoleAssignment.user_id, RoleAssignment.role, Office.code)
                .join(Office, Office.id == RoleAssignment.office_id)
                .order_by(Office.code, RoleAssignment.role)
            ):
                roles.setdefault(user_id, []).append(f"{role}@{code}")
            now = utcnow()
            for user in session.scalars(select(User).order_by(User.username)):
                flags = [] if user.active else ["inactive"]
                if user.locked_until and user.locked_until > now:
                    flags.append("locked")
                extra = f" [{', '.join(flags)}]" if flags else ""
                click.echo(
                    f"{user.username}\t{user.display_name}\t{' '.join(roles.get(user.id, [])) or '-'}{extra}"
                )

    @app.cli.command("simulate-call")
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

    @app.cli.command("worker")
    @click.option("--once", is_flag=True, help="Run every sweep once and exit (for cron or tests).")
    def worker_cmd(once: bool) -> None:
        """Run the background worker: downloads, transcription, reconciliation (APScheduler)."""
        configure_logging()
        cfg: Config = current_app.config["HOTLINE"]
        try:
            worker = build_worker(current_app._get_current_object())  # type: ignore[attr-defined]
        except (ModelError, ConfigError) as exc:
            raise click.ClickException(str(exc)) from exc
        with worker:
            if once:
                # What each sweep did and every fault it met; non-zero when one met a fault (for cron).
                sys.exit(run_once(worker.sweeps(), click.echo))
            # A thread per sweep: a long one (the reminder sweep waits for what falls due) delays no other.
            scheduler = build_scheduler(cfg.timezone_name, worker.sweeps(), threads=len(worker.sweeps()))

            def stop(signum: int, _frame: object) -> None:
                log.info("worker stopping (signal %d)", signum)
                scheduler.shutdown(wait=False)

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            log.info("worker started: %s", ", ".join(s.id for s in worker.sweeps()))
            scheduler.start()

    # Recognition from the shell: the same decoder, registry and pool as the worker.
    app.cli.add_command(transcribe_command)

    @app.cli.group("models")
    def models_group() -> None:
        """Vosk models installed for transcription."""

    models_group.add_command(models_list_command)

    @app.cli.group("spool")
    def spool_group() -> None:
        """Rescue messages kept on disk while the database was down."""

    @spool_group.command("replay")
    def spool_replay() -> None:
        """Store spooled rescue messages with cases now (the worker also does it every minute)."""
        tel: Telephony = current_app.extensions[webhooks.TELEPHONY_KEY]
        waiting = len(telephony_jobs.spool_files(tel.spool_dir))
        stored = telephony_jobs.replay_spool(get_database(), tel)
        click.echo(f"spool: {stored} of {waiting} stored with a case")
        if stored < waiting:
            sys.exit(1)

    @app.cli.command("demo")
    @click.option(
        "--keys", default=None, help="The caller's inputs (default: a violence report from Bangkok)."
    )
    def demo(keys: str | None) -> None:
        """Quick start: migrate the embedded database, load offices, serve, place one simulated call."""
        from cases.offices import load_offices
        from telephony.simulator.commands import DEMO_KEYS, run_demo

        cfg: Config = current_app.config["HOTLINE"]
        click.echo(f"database: {cfg.database_url}")
        upgrade_database(cfg.database_url)
        with get_database().session() as session:
            report = load_offices(session)
        click.echo(f"offices: {report.total}")
        keys = keys or DEMO_KEYS
        click.echo(f"starting the worker; calling the hotline as a caller who keys {keys!r}:")
        sys.exit(run_demo(current_app._get_current_object(), keys))  # type: ignore[attr-defined]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("password", hide_input=True, confirmation_prompt=True)
    return value


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    return user


def _office(session: Session, code: str) -> Office:
    office = session.scalar(select(Office).where(Office.code == code.strip()))
    if office is None:
        raise click.ClickException(f"no office with code {code!r} (run `flask --app app offices load`?)")
    return office


class Worker:
    """The worker's parts: the transcriber pool (child processes) and the sweeps over the database."""

    def __init__(
        self,
        jobs: TranscriptionJobs,
        pool: TranscriberPool,
        interval_s: float,
        db: Database,
        tel: Telephony,
        reminders: callbacks.ReminderSweep,
        outbox: notifications.Outbox,
        reconciler: Reconciler,
        reconcile_s: float,
    ) -> None:
        self.jobs, self.pool, self.interval_s = jobs, pool, interval_s
        self.db, self.tel, self.reminders, self.outbox = db, tel, reminders, outbox
        self.reconciler, self.reconcile_s = reconciler, reconcile_s

    def sweeps(self) -> list[Sweep]:
        slow = max(60.0, self.interval_s)
        return [
            Sweep.reporting("transcription.downloads", self.jobs.sweep_downloads, self.interval_s),
            Sweep.reporting("transcription.transcripts", self.jobs.sweep_transcripts, self.interval_s),
            Sweep.reporting("transcription.reconcile", self.jobs.reconcile, slow),
            Sweep.reporting(
                "telephony.spool", lambda r=None: telephony_jobs.replay_spool(self.db, self.tel, r), slow
            ),
            Sweep(
                "telephony.stale_calls", lambda: telephony_jobs.close_stale_calls(self.db, self.tel), slow * 5
            ),
            # Every message Twilio holds reaches a case, even when no webhook told us of it.
            Sweep.reporting("telephony.reconcile", self.reconciler.sweep, self.reconcile_s),
            Sweep("cases.reminders", self.reminders.sweep, self.interval_s),
            Sweep("cases.outbox", self.outbox.sweep, self.interval_s),
        ]

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.close()


def build_worker(app: Flask) -> Worker:
    """Check the models (a clear error naming the folder), start the transcribers, wire the sweeps."""
    cfg: Config = app.config["HOTLINE"]
    try:
        models = discover_models(parse_model_spec(cfg.vosk_models_spec))
    except ModelSpecError as exc:
        raise ConfigError(f"HOTLINE_VOSK_MODELS: {exc}") from exc
    for info in models.values():
        log.info("model %s: %s (%d Hz, from %s)", info.language, info.path, info.sample_rate, info.source)
    pool = TranscriberPool(
        models,
        size=cfg.transcriber_processes,
        job_timeout_s=cfg.transcribe_timeout_s,
        max_audio_s=cfg.max_audio_s,
        max_jobs_per_process=cfg.transcriber_max_jobs,
    )
    media = MediaClient(cfg.twilio_api_base, cfg.twilio_account_sid, cfg.twilio_auth_token)
    settings = JobSettings(
        download_attempts=cfg.download_attempts,
        backoff_base_s=cfg.download_backoff_s,
        delete_after_download=cfg.delete_after_download,
        transcribe_parallel=cfg.transcriber_processes,
        batch=max(4, cfg.transcriber_processes * 2),
    )
    jobs = TranscriptionJobs(get_database(app), media, pool, cfg.recordings_dir, settings)
    callback_settings: CallbackSettings = app.extensions[callbacks.SETTINGS_KEY]
    reminders = callbacks.ReminderSweep(
        get_database(app),
        callback_settings,
        # SQLite: the webhooks share one write lock; short batches, and room for them in between.
        batch=50 if cfg.is_sqlite else 100,
        pause_s=0.025 if cfg.is_sqlite else 0.0,
        # One run also sends what falls due in most of the interval after it, on time; it ends a
        # little before the next run is due, so APScheduler never finds it still running.
        horizon_s=max(cfg.sweep_interval_s - 0.5, 0.0),
    )
    sms = (
        TwilioRest(cfg.twilio_api_base, cfg.twilio_account_sid, cfg.twilio_auth_token)
        if cfg.sms_from
        else None
    )
    outbox = notifications.build_outbox(
        cfg, get_database(app), callback_settings.line, sms, worker_id=f"{socket.gethostname()}:{os.getpid()}"
    )
    tel: Telephony = app.extensions[webhooks.TELEPHONY_KEY]
    rest = TwilioRest(cfg.twilio_api_base, cfg.twilio_account_sid, cfg.twilio_auth_token)
    reconciler = Reconciler(get_database(app), tel, rest, ReconcileSettings())
    return Worker(
        jobs,
        pool,
        cfg.sweep_interval_s,
        get_database(app),
        tel,
        reminders,
        outbox,
        reconciler,
        cfg.twilio_reconcile_s,
    )


def main() -> None:  # pragma: no cover - for `python app.py`
    configure_logging()
    try:
        create_app().run()
    except (ConfigError, FlowError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":  # pragma: no cover
    main()
