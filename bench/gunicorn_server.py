"""The benchmarks' servers and machine: gunicorn, an app instance, CPU and load figures."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import parse_qs, urlsplit

import requests
from figures import log

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.ports import free_port  # noqa: E402  (one free_port for the tests and benchmarks)

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
PUBLIC_BASE = "https://hotline.example.org"
BARE_PATH = "/bare"
ACCESS_LOG_FORMAT = "%(U)s|%(q)s|%(s)s|%(D)s"
# Environment the app reads; inherited values would point the benchmark at someone's real data.
APP_ENV_PREFIXES = ("HOTLINE_", "TWILIO_")
APP_ENV_NAMES = ("DATABASE_URL", "PUBLIC_BASE_URL")


def step_key(url: str) -> str:
    """'voice', 'status', 'recording-status' or 'ivr seq=N ev=KIND' for a webhook URL (path + query)."""
    parts = urlsplit(url)
    if parts.path == "/twilio/ivr":
        q = parse_qs(parts.query)
        return f"ivr seq={q.get('seq', ['?'])[0]} ev={q.get('ev', ['?'])[0]}"
    return parts.path.rsplit("/", 1)[-1] or parts.path


def gunicorn_has_setting(name: str) -> bool:
    """gunicorn >= 25 or so opens a control socket under ~/.gunicorn; two servers would share it."""
    from gunicorn.config import KNOWN_SETTINGS  # type: ignore[import-untyped]

    return any(getattr(s, "name", None) == name for s in KNOWN_SETTINGS)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process from /proc (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine have used (user, nice, system, irq, softirq, steal)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            v = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


@dataclass(frozen=True)
class ServerFlags:
    workers: int
    worker_class: str
    threads: int
    keep_alive: int
    backlog: int

    def args(self) -> list[str]:
        args = [
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--keep-alive",
            str(self.keep_alive),
            "--backlog",
            str(self.backlog),
        ]
        if self.worker_class == "gthread":
            args += ["--threads", str(self.threads)]
        return args

    def describe(self) -> str:
        threads = f" x {self.threads} threads" if self.worker_class == "gthread" else ""
        return f"{self.workers} {self.worker_class} workers{threads}"


class GunicornServer:
    """One gunicorn master (in its own process group) with its workers; stopped by pid, never by name."""

    def __init__(
        self,
        name: str,
        app_spec: str,
        *,
        flags: ServerFlags,
        env: Mapping[str, str],
        log_dir: Path,
        pythonpath: Path | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.access_log = log_dir / f"{name}-access.log"
        self.error_log = log_dir / f"{name}-error.log"
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            *flags.args(),
            *(["--no-control-socket"] if gunicorn_has_setting("control_socket_disable") else []),
            "--access-logfile",
            str(self.access_log),
            "--access-logformat",
            ACCESS_LOG_FORMAT,
            "--error-logfile",
            str(self.error_log),
            "--log-level",
            "warning",
            "--timeout",
            "60",
        ]
        if pythonpath is not None:
            cmd += ["--pythonpath", str(pythonpath)]
        cmd.append(app_spec)
        self.cmd = cmd
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, not gunicorn; we stop it ourselves
        )

    def wait_ready(self, workers: int, timeout_s: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        with requests.Session() as s:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name}: gunicorn exited ({self.proc.returncode}):\n{self.log_tail()}"
                    )
                try:
                    ok = s.get(self.base_url + "/healthz", timeout=2).status_code == 200
                except requests.RequestException:
                    ok = False
                if ok and len(self.worker_pids()) >= workers:
                    return
                time.sleep(0.1)
        raise RuntimeError(f"{self.name}: /healthz not answering after {timeout_s:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no error log)"

    def worker_pids(self) -> list[int]:
        return child_pids(self.proc.pid) if self.proc is not None else []

    def cpu_seconds(self) -> dict[int, float]:
        """CPU seconds so far of the master and of each live worker, by pid."""
        if self.proc is None:
            return {}
        pids = [self.proc.pid, *self.worker_pids()]
        return {pid: process_cpu_seconds(pid) for pid in pids}

    def access_log_size(self) -> int:
        try:
            return self.access_log.stat().st_size
        except OSError:
            return 0

    def server_timings(self, start: int, end: int) -> dict[str, list[float]]:
        """Request durations (ms) measured by gunicorn, by step, from a byte range of the access log."""
        out: dict[str, list[float]] = {}
        try:
            with open(self.access_log, "rb") as fh:
                fh.seek(start)
                chunk = fh.read(max(0, end - start)).decode("utf-8", "replace")
        except OSError:
            return out
        for line in chunk.splitlines():
            parts = line.strip().split("|")
            if len(parts) != 4 or parts[0] == "/healthz":
                continue
            path, query, _status, micros = parts
            url = path + (f"?{query}" if query not in ("-", "") else "")
            key = "bare" if path == BARE_PATH else step_key(url)
            with contextlib.suppress(ValueError):
                out.setdefault(key, []).append(int(micros) / 1000)
        return out

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of master and workers
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group we created with start_new_session
            proc.wait(timeout=5)


def app_environment(instance_dir: Path, database_url: str, auth_token: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(APP_ENV_PREFIXES) and k not in APP_ENV_NAMES and not k.startswith("FLASK_")
    }
    env.update(
        HOTLINE_INSTANCE_DIR=str(instance_dir),
        DATABASE_URL=database_url,
        PUBLIC_BASE_URL=PUBLIC_BASE,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=auth_token,
        HOTLINE_TRANSFER_NUMBER="+6621266565",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def prepare_database(env: Mapping[str, str]) -> None:
    for args in (["db", "upgrade"], ["offices", "load"]):
        cmd = [sys.executable, "-m", "flask", "--app", "app", *args]
        done = subprocess.run(cmd, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        log(f"  flask --app app {' '.join(args)}: {done.stdout.strip().splitlines()[-1]}")


class PySpy:
    """py-spy record on one worker, stopped with SIGINT so it writes its output."""

    def __init__(self, out: str, pid: int, *, idle: bool) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
        kind = "speedscope" if out.endswith(".json") else "raw" if out.endswith(".txt") else "flamegraph"
        cmd = [exe, "record", "--pid", str(pid), "--output", out, "--format", kind, "--rate", "250"]
        self.proc = subprocess.Popen(
            [*cmd, *(["--idle"] if idle else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def stop(self) -> str:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors="replace").strip()


def stop_on_signals() -> threading.Event:
    """An event set on SIGTERM or SIGINT, which also interrupt the main thread so its clean-up runs."""
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            return  # already stopping: let the clean-up below finish
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Also when started from a script as a background job, where SIGINT arrives ignored.
    signal.signal(signal.SIGINT, on_term)
    return stop
