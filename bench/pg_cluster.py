"""A private PostgreSQL cluster for a benchmark: created in a temporary folder, started, stopped, removed.

Stopping a shared server would stop other people's work; bench/stalls.py stops this one on purpose.
As root, the cluster runs as the postgres user (initdb refuses root), as ./hotline and the tests do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg


class PgCluster:
    """A private PostgreSQL cluster in a temporary folder (as the postgres user when we are root)."""

    def __init__(self, port: int) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (./hotline test installs it)")
        self.bin = bins[-1]
        self.port = port
        self.home = Path(tempfile.mkdtemp(prefix="hotline-bench-pg-"))
        self.data = self.home / "data"
        self.data.mkdir()
        self.run_as: list[str] = []
        self.running = False
        try:
            if os.geteuid() == 0:  # initdb refuses root
                for folder in (self.home, self.data):
                    shutil.chown(folder, "postgres")
                self.run_as = ["runuser", "-u", "postgres", "--"]
            self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        except BaseException:
            shutil.rmtree(self.home, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/hotline"

    def _pg(self, tool: str, *args: str, check: bool = True) -> None:
        done = subprocess.run(
            [*self.run_as, str(self.bin / tool), *args], capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-l", str(self.home / "pg.log"), "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=mode == "fast")
        self.running = False

    def create_database(self) -> None:
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE hotline")

    def destroy(self) -> None:
        self.stop("immediate")  # whatever state it is in (an interrupted start included)
        shutil.rmtree(self.home, ignore_errors=True)
