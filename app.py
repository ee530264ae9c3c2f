"""The application factory and the `flask --app app` command line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from flask import Flask, Response, current_app
from sqlalchemy import text

from infra.config import Config, ConfigError
from infra.crypto import FieldCipher
from infra.db import Database
from infra.logs import configure_logging
from telephony import twiml, webhooks
from telephony.flow import FlowError, load_flow
from telephony.service import Telephony

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
    cfg.instance_dir.mkdir(parents=True, exist_ok=True)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)

    db = Database(cfg.database_url)
    app.extensions[webhooks.DATABASE_KEY] = db
    tel = Telephony(
        flow=flow,
        voices=twiml.Voices(cfg.public_base_url, cfg.voice_th, cfg.voice_en),
        cipher=FieldCipher(cfg.data_key),
        transfer_number=cfg.transfer_number,
        spool_dir=cfg.spool_dir,
    )
    webhooks.init_app(app, tel, str(AUDIO_DIR))

    @app.get("/healthz")
    def healthz() -> Response:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return Response("ok\n", mimetype="text/plain")

    _register_commands(app)
    if cfg.dev_credentials and not app.testing:
        log.info("TWILIO_AUTH_TOKEN not set: using the local development token; real Twilio requests get 403")
    return app


def get_database(app: Flask | None = None) -> Database:
    db: Database = (app or current_app).extensions[webhooks.DATABASE_KEY]
    return db


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
        with get_database().session() as session:
            out.write("[")
            for i, record in enumerate(iter_case_records(session)):
                out.write(("," if i else "") + "\n  " + json.dumps(record, ensure_ascii=False))
            out.write("\n]\n")

    @app.cli.command("simulate-call")
    @click.option("--url", "connect_base", default=None, help="A running app to call (default: start one).")
    @click.option("--keys", default="", help="The caller's inputs, e.g. '1,10,1,1,record:5,1'.")
    @click.option("--from", "from_number", default="+66812345678", show_default=True)
    @click.option("--wav", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
    @click.option("--quiet", is_flag=True, help="Print only the outcome.")
    def simulate_call_cmd(
        connect_base: str | None, keys: str, from_number: str, wav: Path | None, quiet: bool
    ) -> None:
        """Call the hotline as Twilio would: signed webhooks, TwiML followed, a recording served."""
        from telephony.simulator_cli import simulate_call

        code = simulate_call(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            connect_base=connect_base,
            keys=keys,
            from_number=from_number,
            wav=wav,
            quiet=quiet,
        )
        sys.exit(code)

    @app.cli.command("demo")
    @click.option(
        "--keys", default=None, help="The caller's inputs (default: a violence report from Bangkok)."
    )
    def demo(keys: str | None) -> None:
        """Quick start: migrate the embedded database, load offices, serve, place one simulated call."""
        from cases.offices import load_offices
        from telephony.simulator_cli import DEMO_KEYS, simulate_call

        cfg: Config = current_app.config["HOTLINE"]
        click.echo(f"database: {cfg.database_url}")
        upgrade_database(cfg.database_url)
        with get_database().session() as session:
            report = load_offices(session)
        click.echo(f"offices: {report.total}")
        keys = keys or DEMO_KEYS
        click.echo(f"calling the hotline as a caller who keys {keys!r}:")
        code = simulate_call(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            connect_base=None,
            keys=keys,
            from_number="+66812345678",
            wav=None,
            quiet=False,
        )
        sys.exit(code)


def main() -> None:  # pragma: no cover - for `python app.py`
    configure_logging()
    try:
        create_app().run()
    except (ConfigError, FlowError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":  # pragma: no cover
    main()
