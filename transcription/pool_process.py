"""The pool's end of one transcriber process: the process itself, and one pipe (slot) per concurrent job.

A process has one slot, or several when it serves only Whisper (pool_child). Every slot is used by one
thread of the pool at a time; the process's death shows on every slot's pipe (EOF) and on its sentinel.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any, Final

from transcription.pool_child import ChildSettings, JobResult, Status, child_main

# How long a retired child may take to free its model and exit before it is killed.
RETIRE_GRACE_S: Final = 10.0


class ChildLost(Exception):
    """The child process running a job is gone or no longer trusted; the job may be retried elsewhere."""

    status: Status = "failed"
    reason = "crashed"


class ChildHung(ChildLost):
    status: Status = "timeout"
    reason = "timeout"


class ChildUnstartable(ChildLost):
    reason = "start_failed"


class Transcriber:
    """One transcriber process with `slots` pipes. The pool's lock guards `jobs`, `successor`, `recycled`."""

    def __init__(self, context: SpawnContext, settings: ChildSettings, slots: int) -> None:
        pipes = [context.Pipe(duplex=True) for _ in range(slots)]
        self.process: SpawnProcess = context.Process(
            target=child_main,
            args=([child_end for _, child_end in pipes], settings, os.getpid()),
            name="transcriber",
            daemon=True,
        )
        self.process.start()
        # Only the child may hold its ends: otherwise its death would never show up as EOF here.
        for _, child_end in pipes:
            child_end.close()
        assert self.process.pid is not None
        self.pid: int = self.process.pid
        self.slots = [Slot(self, index, conn) for index, (conn, _) in enumerate(pipes)]
        self.jobs = 0
        # The process that took this one's place (after a loss or once recycled): its slot i is slot i's heir.
        self.successor: Transcriber | None = None
        self.recycled = False  # replaced after max jobs: retired once its last busy slot is released
        self._retired_at: float | None = None

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        for slot in self.slots:
            slot.close()

    def retire(self) -> None:
        """Ask the child to exit once it is idle; `reaped` or `finish` collects it."""
        for slot in self.slots:
            with contextlib.suppress(OSError):  # already dead: nothing to ask
                slot.conn.send(None)
            slot.close()
        self._retired_at = time.monotonic()

    def reaped(self) -> bool:
        if self.process.is_alive():
            if self._retired_at is not None and time.monotonic() - self._retired_at > RETIRE_GRACE_S:
                self.process.kill()
            return False
        self.process.join(0)
        return True

    def finish(self, grace_s: float) -> None:
        self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class Slot:
    """One pipe of a transcriber process: one job at a time, used by one thread of the pool at a time."""

    def __init__(self, owner: Transcriber, index: int, conn: Connection) -> None:
        self.owner = owner
        self.index = index
        self.conn = conn
        # close() of the pool (main thread) and a job's thread may both end this pipe at once.
        self._conn_lock = threading.Lock()
        self.ready = False
        self._next_job = 0

    @property
    def pid(self) -> int:
        return self.owner.pid

    def heir(self) -> Slot:
        """This slot, or its counterpart in the process that (last) took its process's place."""
        slot = self
        while slot.owner.successor is not None:
            slot = slot.owner.successor.slots[slot.index]
        return slot

    def poll_ready(self) -> bool:
        """True once the child has reported its models loaded; never blocks."""
        if not self.ready:
            try:
                if self.conn.poll(0):
                    self._take_ready(self.conn.recv())
            except (EOFError, OSError, ChildLost):
                return False
        return self.ready

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            self._take_ready(self._receive(deadline, "load its models"))

    def run(self, language: str, source: Path | bytes, timeout_s: float) -> JobResult:
        self._next_job += 1
        job_id = self._next_job
        try:
            if isinstance(source, Path):
                self.conn.send((job_id, language, str(source)))
            else:
                # The audio goes as raw bytes, not pickled inside the message: no copy into a pickle.
                self.conn.send((job_id, language, None))
                self.conn.send_bytes(source)
        except OSError as exc:
            raise ChildLost(f"transcriber {self.pid} could not take the job: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._receive(deadline, f"finish the job within {timeout_s:g} s", hung=ChildHung)
            if message[0] == "result" and message[1] == job_id:
                result: JobResult = message[2]
                return result

    def _receive(self, deadline: float, task: str, hung: type[ChildLost] = ChildUnstartable) -> Any:
        remaining = deadline - time.monotonic()
        process = self.owner.process
        try:
            ready = wait([self.conn, process.sentinel], timeout=max(remaining, 0))
        except (OSError, ValueError):  # another thread killed the process and closed this pipe
            ready = [process.sentinel]
        if self.conn in ready:
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                pass
        elif not ready:
            raise hung(f"transcriber {self.pid} did not {task}")
        process.join(1)
        raise ChildLost(f"transcriber {self.pid} died ({describe_exit(process.exitcode)})")

    def _take_ready(self, message: Any) -> None:
        if message[0] == "ready":
            self.ready = True
        elif message[0] == "load_failed":
            raise ChildUnstartable(f"transcriber {self.pid} could not load its models: {message[1]}")

    def close(self) -> None:
        """Close our end once, whichever thread gets here first (two closes race to EBADF)."""
        with self._conn_lock, contextlib.suppress(OSError):
            self.conn.close()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
