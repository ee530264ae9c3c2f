"""A real server process, called by the simulator, with the outcome read back through the CLI export."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from telephony.simulator.config import SimulatorConfig
from telephony.simulator.media_server import MediaServer
from telephony.simulator.run import run_call
from telephony.simulator.script import CallScript
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, database_url
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PUBLIC_BASE = "https://hotline.example.org"
pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "HOTLINE_", "FLASK_"))}
    env.update(
        HOTLINE_INSTANCE_DIR=str(tmp_path / "instance"),
        DATABASE_URL=database_url(tmp_path),
        PUBLIC_BASE_URL=PUBLIC_BASE,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        PYTHONPATH=str(ROOT),
    )
    return env


def flask_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flask"), "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def gunicorn(tmp_path: Path, env: dict[str, str], *flags: str) -> Iterator[str]:
    """The app under gunicorn (migrated, offices loaded) with these flags; yields its base URL."""
    for args in (("db", "upgrade"), ("offices", "load")):
        done = flask_cli(env, *args)
        assert done.returncode == 0, done.stderr
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", *flags, "app:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass  # not listening yet, or a worker still booting
            assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = _env(tmp_path)
    with gunicorn(tmp_path, env, "--workers", "2") as base:
        yield base, env


def test_a_simulated_call_to_a_real_server_becomes_an_exported_draft_case(
    server: tuple[str, dict[str, str]],
) -> None:
    base, env = server
    sim = SimulatorConfig(
        connect_base=base, public_base=PUBLIC_BASE, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
    )
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        result = run_call(sim, CallScript.parse("2,50,1,2,0812345678#,1,record:8,1"), media=media)
        # The recording really is behind basic auth where the case says it is.
        recording_url = media.recording_url(result.recordings[0])
        assert requests.get(recording_url, timeout=5).status_code == 401
        assert requests.get(recording_url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 200

    assert result.ended_by == "hangup-verb", [e.describe() for e in result.events]
    assert not result.errors()
    spoken = result.spoken_text()
    assert "เชียงใหม่" in spoken  # the province read back

    exported = flask_cli(env, "cases", "export", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    cases = json.loads(exported.stdout)
    assert len(cases) == 1
    case = cases[0]
    assert re.fullmatch(r"\d{8}", case["reference"])
    # The reference the caller heard is the one on the case (read digit by digit in Thai).
    assert "ได้รับเรื่องของท่านแล้ว" in spoken
    assert case["category"] == case["ivr_category"] == "accident"
    assert case["province_code"] == "50"
    assert case["office_code"] == "50"
    assert case["language"] == "th"
    assert case["callback_requested"] is True
    assert case["caller_number_masked"] == "+66 8x xxx x678"
    assert case["recording_sid"] == result.recordings[0]
    assert case["recording_status"] == "completed"
    assert case["status"] == "draft"
    assert case["created_at"].endswith("Z")
    assert "0812345678" not in exported.stdout


def test_simulate_call_command_against_a_running_server(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    done = flask_cli(env, "simulate-call", "--url", base, "--keys", "3,#,3,record:4,1", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ended: hangup-verb" in done.stdout
    printed = json.loads(done.stdout[done.stdout.index("{") :])
    assert printed["category"] == "rights_violation"
    assert printed["office_code"] == "central"  # province skipped with #
    assert printed["callback_requested"] is False
    assert printed["caller_number_masked"] is None


def test_quick_start_demo_runs_on_embedded_defaults(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "HOTLINE_", "FLASK_", "DATABASE"))
    }
    env["HOTLINE_INSTANCE_DIR"] = str(tmp_path / "instance")
    done = flask_cli(env, "demo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "draft case:" in done.stdout
    case = json.loads(done.stdout[done.stdout.index("{", done.stdout.index("draft case:")) :])
    assert case["category"] == "violence"
    assert case["office_code"] == "10"
    # The caller speaks real Thai: the shipped Whisper model gives Thai text, out of the box.
    assert case["transcript_status"] == "done", case
    assert "เวลา" in case["transcript_text"]
    assert (tmp_path / "instance" / "hotline.db").exists()
    secrets_file = tmp_path / "instance" / "local-secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
