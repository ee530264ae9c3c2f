"""A wrong setting stops every entry point with one line naming it and exit 2, never a traceback.

Each variable of the README's configuration table gets a wrong value in a real `flask --app app`
process; the table is read from the README, so a new row fails here until it has a wrong value too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# No test database is used (the default SQLite of a fresh instance): one run, not again on PostgreSQL.
pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


def readme_variables() -> list[str]:
    """Every variable the README's "## Configuration" table names (a `<LANG>` pattern as Thai's)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names += [name.replace("<LANG>", "TH") for name in re.findall(r"`([A-Z_<>]+)`", first_cell)]
    return names


def a_file(tmp_path: Path) -> str:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return str(path)


def non_utf8_yaml(tmp_path: Path) -> str:
    path = tmp_path / "callbacks.yaml"
    path.write_bytes("sla:\n  violence: 60\n# ความรุนแรง\n".encode("tis-620"))  # Thai, in the old 8-bit code
    return str(path)


def impossible_holiday(tmp_path: Path) -> str:
    path = tmp_path / "holidays.yaml"
    path.write_text("- {date: 2027-02-30, name_th: วันหยุด, name_en: Holiday}\n", encoding="utf-8")
    return str(path)


def audit_shorter_than_recordings(tmp_path: Path) -> str:
    path = tmp_path / "retention.yaml"
    shipped = (ROOT / "cases" / "data" / "retention.yaml").read_text(encoding="utf-8")
    path.write_text(shipped.replace("audit: 1825", "audit: 60"), encoding="utf-8")
    return str(path)


# One wrong value per variable, as an operator might write it. A value is text or made from tmp_path.
BAD: dict[str, str | Callable[[Path], str]] = {
    "TWILIO_ACCOUNT_SID": "AC123",
    "TWILIO_AUTH_TOKEN": "0123456789abcdef0123456789abcdef\r",  # from an env file with CRLF line ends
    "PUBLIC_BASE_URL": "hotline.example.org",
    "DATABASE_URL": "mysql://db/hotline",
    "TWILIO_API_BASE": "https://api.twilio.com/?region=sg",
    "HOTLINE_DATA_DIR": a_file,
    "HOTLINE_INSTANCE_DIR": a_file,
    "HOTLINE_TIMEZONE": "Bangkok",
    "HOTLINE_CONSOLE_DIGITS": "roman",
    "HOTLINE_TRANSFER_NUMBER": "1234",
    "HOTLINE_FLOW_FILE": lambda tmp: str(tmp / "missing.yaml"),
    "HOTLINE_VOICE_TH": "alice",  # a classic voice, which cannot speak Thai
    "HOTLINE_VOICE_EN": "Joanna",
    "HOTLINE_SECRET_KEY": "a pasted secret\n",
    "HOTLINE_DATA_KEY": "not-a-fernet-key",
    "HOTLINE_RECORDING_KEY": "c2hvcnQ=",  # base64, but 5 bytes: not an AES-256 key
    "TWILIO_DELETE_AFTER_DOWNLOAD": "maybe",
    "HOTLINE_VOSK_MODELS": "/srv/models/vosk-th",
    "HOTLINE_WHISPER_MODELS": "th=",
    "HOTLINE_ENGINE_TH": "google",
    "HOTLINE_WHISPER_THREADS": "0",
    "HOTLINE_TRANSCRIBERS": "two",
    "HOTLINE_WHISPER_JOBS_PER_PROCESS": "0",
    "HOTLINE_TRANSCRIBE_TIMEOUT_SECONDS": "-1",
    "HOTLINE_MAX_AUDIO_SECONDS": "1e9",
    "HOTLINE_TRANSCRIBER_MAX_JOBS": "1.5",
    "HOTLINE_SWEEP_SECONDS": "fast",
    "HOTLINE_WEBHOOK_DB_SECONDS": "15",
    "HOTLINE_TWILIO_RECONCILE_SECONDS": "1",
    "HOTLINE_DOWNLOAD_ATTEMPTS": "0",
    "HOTLINE_DOWNLOAD_BACKOFF_SECONDS": "-5",
    "HOTLINE_SESSION_IDLE_MINUTES": "0",
    "HOTLINE_ROUTE_WITHOUT_OPERATOR": "nearest",
    "HOTLINE_SESSION_MAX_HOURS": "1000",
    "HOTLINE_CALLBACKS_FILE": non_utf8_yaml,
    "HOTLINE_HOLIDAYS_FILE": impossible_holiday,
    "HOTLINE_RETENTION_FILE": audit_shorter_than_recordings,
    "HOTLINE_NUMBER": "02 126",
    "HOTLINE_SMTP_HOST": "smtp://mail.example.org:25",
    "HOTLINE_SMTP_PORT": "0",
    "HOTLINE_SMTP_USER": "hotline",  # with no host to sign in to
    "HOTLINE_SMTP_PASSWORD": "hunter2",  # with no user
    "HOTLINE_SMTP_STARTTLS": "sometimes",
    "HOTLINE_MAIL_FROM": "Safety Center",
    "HOTLINE_SMS_FROM": "MG123",
    "LINE_API_BASE": "api.line.me",
    "HOTLINE_NOTIFY_ATTEMPTS": "100",
    "HOTLINE_NOTIFY_BACKOFF_SECONDS": "soon",
    "HOTLINE_ENV": "prod",
    "HOTLINE_TRUSTED_PROXIES": "many",
    "HOTLINE_STAFF_PHONE_COUNTRIES": "thailand",
    "HOTLINE_BRIDGE_CALLS_PER_USER_HOUR": "0",
    "HOTLINE_BRIDGE_CALLS_PER_CASE_HOUR": "lots",
}
# Never printed, even when wrong.
SECRETS = {
    "TWILIO_AUTH_TOKEN",
    "HOTLINE_SECRET_KEY",
    "HOTLINE_DATA_KEY",
    "HOTLINE_RECORDING_KEY",
    "HOTLINE_SMTP_PASSWORD",
}


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This process's environment without any hotline setting, a fresh instance dir, then `settings`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HOTLINE_", "TWILIO_", "SMTP_", "LINE_"))
        and k not in ("DATABASE_URL", "PUBLIC_BASE_URL", "SERVER_SOFTWARE")
    }
    env["HOTLINE_INSTANCE_DIR"] = str(tmp_path / "instance")
    env.update(settings)
    return env


def run(cmd: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "flask"), "--app", "app", *args], env)


def assert_one_line(done: subprocess.CompletedProcess[str], *named: str, code: int = 2) -> str:
    """Exit `code`, and stderr is one line `hotline: …` naming each of `named`."""
    assert done.returncode == code, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("hotline: "), lines[0]
    for name in named:
        assert name in lines[0]
    return lines[0]


def forked_flask(runs: list[tuple[dict[str, str], list[str]]]) -> list[subprocess.CompletedProcess[str]]:
    """Each run a `flask --app app …` process of its own, forked from one that imported the app once."""
    payload = json.dumps([{"env": env, "args": ["--app", "app", *args]} for env, args in runs])
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.flask_forks"],
        cwd=ROOT,
        # No BLAS thread pool in the parent (numpy is imported): a fork copies only the forking thread.
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        input=payload,
        capture_output=True,
        text=True,
        timeout=60 + 5 * len(runs),
        check=True,
    )
    return [
        subprocess.CompletedProcess(args, r["returncode"], r["stdout"], r["stderr"])
        for (_env, args), r in zip(runs, json.loads(done.stdout), strict=True)
    ]


@pytest.fixture(scope="module")
def table_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[str, subprocess.CompletedProcess[str]]]:
    """`flask --app app config check` with each variable of the table wrong, one at a time."""
    runs, values = [], []
    for variable in readme_variables():
        tmp = tmp_path_factory.mktemp(variable.lower())
        bad = BAD.get(variable, "")
        value = bad if isinstance(bad, str) else bad(tmp)
        values.append((variable, value))
        runs.append((clean_env(tmp, **{variable: value}), ["config", "check"]))
    return {
        variable: (value, done) for (variable, value), done in zip(values, forked_flask(runs), strict=True)
    }


def test_every_variable_of_the_table_has_a_wrong_value_here() -> None:
    names = readme_variables()
    assert len(names) > 40  # the table was found and read
    assert not [name for name in names if name not in BAD]


@pytest.mark.parametrize("variable", readme_variables())
def test_a_wrong_value_is_one_line_naming_the_variable(
    table_runs: dict[str, tuple[str, subprocess.CompletedProcess[str]]], variable: str
) -> None:
    value, done = table_runs[variable]
    line = assert_one_line(done, variable)
    if variable in SECRETS:
        assert value.strip() not in line


def test_the_defaults_pass_the_check(tmp_path: Path) -> None:
    done = flask(clean_env(tmp_path), "config", "check")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "configuration ok\n"


def secrets_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "instance" / "local-secrets.json"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(content)
    return path


def test_a_broken_secrets_file_settings_file_or_folder_is_one_line(tmp_path: Path) -> None:
    """The cases of issue 12 beyond the table, through several commands, each its own process."""
    cases: list[tuple[str, dict[str, str], list[str], tuple[str, ...]]] = []

    def case(name: str, settings: dict[str, str], args: list[str], *named: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        cases.append((name, {**clean_env(folder), **settings}, args, named))
        return folder

    for name, content, named in (
        ("list", b'["twilio_auth_token", "secret_key", "data_key"]', ("must hold a JSON object", "list")),
        ("latin1", '{"secret_key": "caf\xe9"}'.encode("latin-1"), ("is not readable JSON",)),
        ("number", b'{"twilio_auth_token": 5, "secret_key": "k", "data_key": "d"}', ("twilio_auth_token",)),
        ("data-key", b'{"twilio_auth_token": "t", "secret_key": "s", "data_key": "d"}', ("data_key",)),
    ):
        folder = case(
            f"secrets-{name}", {}, ["cases", "export", "--format", "json"], "local-secrets.json", *named
        )
        secrets_file(folder, content)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    # A data dir inside a file; a YAML error, whose parser's message spans lines; a LINE token unset.
    case(
        "data-dir", {"HOTLINE_DATA_DIR": f"{a_file}/data"}, ["db", "upgrade"], "HOTLINE_DATA_DIR", "is a file"
    )
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("sla:\n  violence: [60\nhours: {}\n", encoding="utf-8")
    case(
        "yaml", {"HOTLINE_CALLBACKS_FILE": str(bad_yaml)}, ["users", "list"], "HOTLINE_CALLBACKS_FILE", "YAML"
    )
    line_office = tmp_path / "line.yaml"
    shipped = (ROOT / "cases" / "data" / "callbacks.yaml").read_text(encoding="utf-8")
    line_office.write_text(
        shipped + "offices:\n  '10':\n    line: {group_id: C" + "0" * 32 + ", token_env: LINE_TOKEN_BKK}\n",
        encoding="utf-8",
    )
    case("line", {"HOTLINE_CALLBACKS_FILE": str(line_office)}, ["worker", "--once"], "LINE_TOKEN_BKK")
    short_audit = tmp_path / "retention.yaml"
    shipped_retention = (ROOT / "cases" / "data" / "retention.yaml").read_text(encoding="utf-8")
    short_audit.write_text(shipped_retention.replace("audit: 1825", "audit: 7"), encoding="utf-8")
    case(
        "retention",
        {"HOTLINE_RETENTION_FILE": str(short_audit)},
        ["retention", "plan"],
        "HOTLINE_RETENTION_FILE",
        "audit",
    )
    # The worker's own settings, read after the app started; and flask's help, which loads the app too.
    case(
        "worker", {"HOTLINE_WHISPER_MODELS": "whisper-large"}, ["worker", "--once"], "HOTLINE_WHISPER_MODELS"
    )
    case("help", {"HOTLINE_TIMEZONE": "GMT+7"}, ["--help"], "HOTLINE_TIMEZONE")

    runs = forked_flask([(env, args) for _name, env, args, _named in cases])
    for (name, _env, _args, named), done in zip(cases, runs, strict=True):
        assert done.returncode == 2, (name, done.stderr)
        assert_one_line(done, *named)


def test_a_real_flask_process_prints_no_traceback(tmp_path: Path) -> None:
    """Not forked: the whole `flask` start, imports included, under the wrong value."""
    done = flask(clean_env(tmp_path, HOTLINE_SESSION_IDLE_MINUTES="thirty"), "users", "list")
    line = assert_one_line(done, "HOTLINE_SESSION_IDLE_MINUTES")
    assert line == "hotline: HOTLINE_SESSION_IDLE_MINUTES='thirty' is not a whole number"
    assert done.stdout == ""


@pytest.mark.parametrize("preload", [False, True], ids=["workers-load", "preload"])
def test_gunicorn_stops_with_one_line_instead_of_respawning_workers(tmp_path: Path, preload: bool) -> None:
    """A worker that fails to load exits 4 (APP_LOAD_ERROR): the arbiter stops instead of respawning it."""
    flags = ["--preload"] if preload else []
    # Port 0: the system picks a free one at bind time. A port found free beforehand may be taken by a
    # parallel test before gunicorn binds it, and gunicorn then exits 1 ("Connection in use").
    cmd = [str(BIN / "gunicorn"), "--bind", "127.0.0.1:0", "--workers", "2", *flags]
    done = run([*cmd, "app:create_app()"], clean_env(tmp_path, HOTLINE_ENV="staging"), timeout=60)
    assert done.returncode == 4, done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("hotline: ")]
    # Each worker that started says it once (two workers, or none when the arbiter loads the app).
    assert ours and set(ours) == {"hotline: HOTLINE_ENV='staging' is not one of development, production"}
    assert len(ours) <= (1 if preload else 2)
    assert "Traceback" not in done.stderr


def test_gunicorn_app_load_error_is_the_one_we_exit_with() -> None:
    from gunicorn.arbiter import Arbiter

    from app import GUNICORN_APP_LOAD_ERROR

    assert Arbiter.APP_LOAD_ERROR == GUNICORN_APP_LOAD_ERROR
