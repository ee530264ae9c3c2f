"""The application factory and the worker's composition; each package registers its own commands.

`MIGRATIONS_DIR` and `upgrade_database` are re-exported for the tests and benchmarks that import them here.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
from flask import Flask, Response, current_app
from flask.cli import with_appcontext
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import text

from backups import cli as backups_cli
from backups.create import Source as BackupSource
from cases import callbacks, keys, notifications, phones, search_index
from cases import cli as cases_cli
from cases.callbacks.dialing import BridgeLimits
from cases.callbacks.settings import CallbackSettings, CallbackSettingsError, load_callback_settings
from cases.keys_cli import keys_group, seal_plain_recordings
from cases.retention import RetentionSweep, load_retention_settings
from cases.retention.cli import retention_group
from cases.retention.settings import retention_settings
from cases.subject.cli import subject_group
from console import wiring as console
from console.proxies import trust_proxies
from console.subject import erasure_sweep
from infra.config import Config, ConfigError, private_folder
from infra.db import Database, database
from infra.logs import configure_logging
from infra.scheduler import Sweep, build_scheduler, run_once
from migrations import MIGRATIONS_DIR, upgrade_database
from migrations.cli import db_group
from telephony import bridge, bridge_webhooks, spool, twiml, webhooks
from telephony import cli as telephony_cli
from telephony import jobs as telephony_jobs
from telephony.flow import Flow, FlowError, load_flow
from telephony.reconcile import Reconciler, ReconcileSettings
from telephony.rest import TwilioRest
from telephony.service import Telephony
from transcription import cli as transcription_cli
from transcription.jobs import JobSettings, TranscriptionJobs
from transcription.media import MediaClient
from transcription.pool import TranscriberPool
from transcription.registry import ModelError, ModelSpecError, parse_model_spec
from transcription.whisper_models import discover_engines

ROOT = Path(__file__).resolve().parent
AUDIO_DIR = ROOT / "ivr_flows" / "audio"
log = logging.getLogger("hotline")

# Between two retention batches on SQLite: room for the webhooks queued on the write lock.
RETENTION_PAUSE_S = 0.02

__all__ = ["MIGRATIONS_DIR", "Worker", "build_worker", "create_app", "get_database", "upgrade_database"]

# The exit status of a start refused for a wrong setting (as click's for a wrong option).
EXIT_CONFIG = 2
GUNICORN_APP_LOAD_ERROR = 4  # gunicorn.arbiter.Arbiter.APP_LOAD_ERROR


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the web app: configuration, database, flow, webhooks and commands. Nothing at import time.

    Without `config` this is an entry point (`flask --app app …`, `gunicorn 'app:create_app()'`): files
    are made private (umask 077), and a wrong setting ends the process with one line naming it.
    """
    if config is None:
        os.umask(0o077)  # the database, its WAL and SHM, secrets, recordings: the owner's alone
        with refusing_bad_settings():
            app = _create_app(Config.from_env())
            _check_keys(app)  # a missing or wrong key stops the start, naming what it cannot read
            return app
    return _create_app(config if isinstance(config, Config) else Config.from_env(env=dict(config)))


@contextmanager
def refusing_bad_settings() -> Iterator[None]:
    """At an entry point: a ConfigError ends the process with `hotline: <message>` on stderr, exit 2."""
    try:
        yield
    except ConfigError as exc:
        refuse_start(exc)


def refuse_start(exc: ConfigError) -> NoReturn:
    """One line on stderr, no traceback. A YAML parser's message spans lines; it is joined into one."""
    print("hotline: " + " ".join(str(exc).split()), file=sys.stderr, flush=True)
    if os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        # A gunicorn worker that exits 2 is replaced by one that fails the same way, forever; on
        # APP_LOAD_ERROR the arbiter stops the whole server ("App failed to load").
        raise SystemExit(GUNICORN_APP_LOAD_ERROR)
    raise SystemExit(EXIT_CONFIG)


@contextmanager
def _naming(variable: str) -> Iterator[None]:
    """A file's error also names the variable that points at it (the file may be the default)."""
    try:
        yield
    except (ConfigError, FlowError) as exc:
        raise ConfigError(f"{variable}: {exc}") from exc


def _create_app(cfg: Config) -> Flask:
    with _naming("HOTLINE_FLOW_FILE"):
        flow = load_flow(cfg.flow_file)  # a broken flow stops the start, naming file, node and field

    app = _flask_app(cfg)
    # A broken callbacks or holidays file stops the start too (a ConfigError naming file and field).
    callback_settings = _callback_settings(cfg)
    with _naming("HOTLINE_RETENTION_FILE"):
        retention = load_retention_settings(cfg.retention_file)

    db = Database(cfg.database_url)
    database.install(app, db)
    callbacks.callback_settings.install(app, callback_settings)
    retention_settings.install(app, retention)
    # What notify() may queue on: the channels configured here and the offices' LINE groups.
    notifications.install_targets(
        db,
        notifications.DeliveryTargets.from_config(
            cfg, callback_settings.line, callback_settings.alert_channels
        ),
    )
    call_bridge = _wire_telephony(app, cfg, flow, callback_settings)
    _wire_console(app, cfg, call_bridge)

    @app.get("/healthz")
    def healthz() -> Response:
        with db.reading() as conn:  # the writers' engine would BEGIN IMMEDIATE: a probe must not queue
            conn.execute(text("SELECT 1"))
        return Response("ok\n", mimetype="text/plain")

    _register_commands(app)
    if cfg.dev_credentials and not app.testing:
        log.info("TWILIO_AUTH_TOKEN not set: using the local development token; real Twilio requests get 403")
    return app


def _check_keys(app: Flask) -> None:
    """The configured keys must open the oldest and newest stored numbers and recordings (cases.keys)."""
    db = get_database(app)
    try:
        cfg: Config = app.config["HOTLINE"]
        keys.check_keys(db, cfg.cipher, cfg.sealer)
    except keys.KeyCheckFailed as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        db.dispose()  # no connection of the check outlives it (a server may fork after this)


def _callback_settings(cfg: Config) -> CallbackSettings:
    try:
        return load_callback_settings(cfg.callbacks_file, cfg.holidays_file, cfg.timezone_name)
    except CallbackSettingsError as exc:
        holidays = Path(exc.path) == Path(cfg.holidays_file)
        raise ConfigError(
            f"{'HOTLINE_HOLIDAYS_FILE' if holidays else 'HOTLINE_CALLBACKS_FILE'}: {exc}"
        ) from exc


def _flask_app(cfg: Config) -> Flask:
    """The Flask object with its session cookie and CSRF settings, and our private folders made."""
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
    private_folder("HOTLINE_INSTANCE_DIR", cfg.instance_dir)
    private_folder("HOTLINE_DATA_DIR", cfg.data_dir)
    return app


def _wire_telephony(
    app: Flask, cfg: Config, flow: Flow, callback_settings: CallbackSettings
) -> bridge.Bridge:
    """Twilio's webhooks for the IVR and for the call-back bridge; returns the bridge."""
    tel = Telephony(
        flow=flow,
        voices=twiml.Voices(cfg.public_base_url, cfg.voice_th, cfg.voice_en),
        cipher=cfg.cipher,
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
    return call_bridge


def _wire_console(app: Flask, cfg: Config, call_bridge: bridge.Bridge) -> None:
    """The staff console, its CSRF protection, and the dialer it places call-backs with."""
    # Every form carries a CSRF token; Twilio's webhooks are exempt because their signature protects them.
    csrf = CSRFProtect(app)
    csrf.exempt(webhooks.bp)
    csrf.exempt(bridge_webhooks.bp)
    dialer = bridge.TwilioDialer(twilio_rest(cfg), call_bridge.url, cfg.hotline_number)
    cipher = cfg.cipher
    # Codes that verify staff phones go by SMS from HOTLINE_SMS_FROM, else from the hotline's number.
    staff_phones = phones.PhoneSetup(
        phone_policy(cfg), cipher, twilio_rest(cfg), cfg.sms_from or cfg.hotline_number
    )
    limits = BridgeLimits(cfg.bridge_calls_per_user_hour, cfg.bridge_calls_per_case_hour)
    console.init_app(app, cipher, dialer, staff_phones, limits)
    # An approved erasure's recordings: files, then Twilio's copies, as the retention sweep removes them.
    erasure_sweep.install(app, lambda: _retention_sweep(app))  # finishes an approved erasure
    # Behind the README's TLS proxy every peer is the proxy: the sign-in throttle needs the real client.
    trust_proxies(app, cfg.trusted_proxies)


def phone_policy(cfg: Config) -> phones.PhonePolicy:
    """The rules for staff phones: the allowed countries (HOTLINE_STAFF_PHONE_COUNTRIES)."""
    return phones.PhonePolicy(countries=cfg.staff_phone_countries)


def twilio_rest(cfg: Config) -> TwilioRest:
    """Twilio's REST client of the configured account; one each for the dialer, downloads, SMS and
    reconcile: they run on threads of their own, and a requests.Session is not promised to be thread-safe."""
    return TwilioRest(cfg.twilio_api_base, cfg.twilio_account_sid, cfg.twilio_auth_token)


def get_database(app: Flask | None = None) -> Database:
    return database(app or current_app)


def _register_commands(app: Flask) -> None:
    """Each package's own command groups, and the worker's command (composed here)."""

    def database() -> Database:
        return get_database(app)

    def database_url() -> str:
        cfg: Config = app.config["HOTLINE"]
        return cfg.database_url

    def engine_settings() -> transcription_cli.EngineSettings:
        cfg: Config = app.config["HOTLINE"]
        return transcription_cli.EngineSettings(
            cfg.data_dir, dict(cfg.engine_choices), cfg.whisper_threads, cfg.whisper_jobs_per_process
        )

    def backup_source() -> BackupSource:
        cfg: Config = app.config["HOTLINE"]
        return BackupSource(cfg.database_url, cfg.data_dir, cfg.data_key, cfg.cipher, cfg.sealer)

    def retention_sweep() -> RetentionSweep:
        return _retention_sweep(app)

    def seal_plain() -> str:
        cfg = app.config["HOTLINE"]
        # Also the search hashes of numbers stored before them (a migration has no key to make them).
        hashed = search_index.fill_digit_hashes(database(), cfg.cipher, only_missing=True)
        return f"{seal_plain_recordings(database(), cfg.sealer)}\nsearch: {hashed} cases' number hashes made"

    for command in (
        db_group(database_url, seal_plain),
        keys_group(
            database,
            lambda: (app.config["HOTLINE"].cipher, app.config["HOTLINE"].sealer),
            lambda: app.config["HOTLINE"].data_dir,
            [lambda c, r, p: spool.rotate_numbers(app.config["HOTLINE"].spool_dir, c, r, p)],
        ),
        backups_cli.backup_group(backup_source, lambda: database().dispose()),
        retention_group(database, lambda: retention_settings(app), retention_sweep),
        subject_group(
            database,
            lambda: (app.config["HOTLINE"].cipher, app.config["HOTLINE"].sealer),
            retention_sweep,
            lambda: app.config["HOTLINE"].data_dir,
        ),
        *cases_cli.command_groups(database, lambda: phone_policy(app.config["HOTLINE"])),
        *telephony_cli.command_groups(database),
        *transcription_cli.command_groups(engine_settings),
        config_group,
        worker_cmd,
    ):
        app.cli.add_command(command)


@click.group("config")
def config_group() -> None:
    """The service's settings (README "Configuration")."""


@config_group.command("check")
@with_appcontext
def config_check_cmd() -> None:
    """Check every setting without touching the database: what the app's start reads, and the worker's
    model lists. A wrong one is one line naming it, exit 2 (a deploy script can run this first)."""
    with refusing_bad_settings():
        _model_specs(current_app.config["HOTLINE"])
    click.echo("configuration ok")


@click.command("worker")
@click.option("--once", is_flag=True, help="Run every sweep once and exit (for cron or tests).")
@with_appcontext
def worker_cmd(once: bool) -> None:
    """Run the background worker: downloads, transcription, reconciliation (APScheduler)."""
    configure_logging()
    cfg: Config = current_app.config["HOTLINE"]
    try:
        worker = build_worker(current_app._get_current_object())  # type: ignore[attr-defined]
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    except ConfigError as exc:
        refuse_start(exc)
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
        retention: RetentionSweep,
    ) -> None:
        self.jobs, self.pool, self.interval_s = jobs, pool, interval_s
        self.db, self.tel, self.reminders, self.outbox = db, tel, reminders, outbox
        self.reconciler, self.reconcile_s = reconciler, reconcile_s
        self.retention = retention

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
            # Once a night at the retention file's sweep_at, in HOTLINE_TIMEZONE (the scheduler's zone).
            Sweep.daily("cases.retention", self.retention.sweep, self.retention.settings.sweep_at),
        ]

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.close()


def _model_specs(cfg: Config) -> dict[str, dict[str, Path]]:
    """The worker's model lists by variable; a wrong one is a ConfigError naming it."""
    specs = {}
    for variable, spec in (
        ("HOTLINE_VOSK_MODELS", cfg.vosk_models_spec),
        ("HOTLINE_WHISPER_MODELS", cfg.whisper_models_spec),
    ):
        try:
            specs[variable] = parse_model_spec(spec)
        except ModelSpecError as exc:
            raise ConfigError(f"{variable}: {exc}") from exc
    return specs


def build_worker(app: Flask) -> Worker:
    """Check the models (a clear error naming the folder), start the transcribers, wire the sweeps."""
    cfg: Config = app.config["HOTLINE"]
    specs = _model_specs(cfg)
    catalogue = discover_engines(
        specs["HOTLINE_VOSK_MODELS"],
        specs["HOTLINE_WHISPER_MODELS"],
        data_dir=cfg.data_dir,
        choices=cfg.engine_choices,
    )
    for info in catalogue.models.values():
        log.info(
            "model %s: %s %s (%d Hz, from %s)",
            info.language,
            info.engine,
            info.path,
            info.sample_rate,
            info.source,
        )
    for language, why in catalogue.refused.items():
        log.error("no model for %s, its messages end no_model: %s", language, why)
    pool = TranscriberPool(
        catalogue.models,
        size=cfg.transcriber_processes,
        job_timeout_s=cfg.transcribe_timeout_s,
        max_audio_s=cfg.max_audio_s,
        max_jobs_per_process=cfg.transcriber_max_jobs,
        cpu_threads=cfg.whisper_threads,
        jobs_per_process=cfg.whisper_jobs_per_process,
    )
    # telephony's client behind transcription's RecordingMedia; recordings are sealed as they arrive.
    media = MediaClient(twilio_rest(cfg), cfg.sealer)
    settings = JobSettings(
        download_attempts=cfg.download_attempts,
        backoff_base_s=cfg.download_backoff_s,
        delete_after_download=cfg.delete_after_download,
        transcribe_parallel=cfg.transcriber_processes,
        batch=max(4, cfg.transcriber_processes * 2),
    )
    jobs = TranscriptionJobs(
        get_database(app), media, pool, cfg.recordings_dir, settings, on_transcript=search_index.on_transcript
    )
    callback_settings = callbacks.callback_settings(app)
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
    sms = twilio_rest(cfg) if cfg.sms_from else None
    outbox = notifications.build_outbox(
        cfg,
        get_database(app),
        callback_settings.line,
        sms,
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        alerts=callback_settings.alert_channels,
    )
    tel = webhooks.telephony(app)
    reconciler = Reconciler(get_database(app), tel, twilio_rest(cfg), ReconcileSettings())
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
        _retention_sweep(app),
    )


def _retention_sweep(app: Flask) -> RetentionSweep:
    """The worker's nightly sweep and `retention sweep` by hand: on SQLite a pause between batches lets
    the webhooks waiting for the one write lock go first (see bench/retention_sweep.py)."""
    cfg: Config = app.config["HOTLINE"]
    pause_s = RETENTION_PAUSE_S if cfg.is_sqlite else 0.0
    return RetentionSweep(get_database(app), retention_settings(app), twilio_rest(cfg), pause_s=pause_s)


def main() -> None:  # pragma: no cover - for `python app.py`
    configure_logging()
    create_app().run()  # a wrong setting ends it with one line (create_app is the entry point)


if __name__ == "__main__":  # pragma: no cover
    main()
