"""Staff at the console for bench/mixed_load.py: signed-in sessions that reload the queue and open cases.

They run in a process of their own (``StaffProcess``), so parsing their pages never holds the callers'
interpreter lock: the callers' latencies stay the server's. The parent tells it how many sessions to run
and when to stop, over a pipe; the process ends when told to, or when the parent goes away.

One session signs in through the real form (the CSRF token read from the login page, its own user) and
then, until stopped: reloads the queue (page 1), opens one of the cases listed, and now and then goes
to the next page of the queue and opens a case from there. It pauses ``think_ms`` (0.5x to 1.5x) before
each page, like a person reading (the first pause also spreads the sessions' start). Every answer is
checked: 200 and a text the page must hold. A request that meets a connection the server has just
closed for idleness (a pause past gunicorn's 5 s keep-alive) is sent once more, as a browser does, and
counted (``retried``); any other failure is a failure.
"""

from __future__ import annotations

import contextlib
import html
import http.cookiejar
import multiprocessing
import random
import re
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import requests

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CASE_LINK = re.compile(r'href="/console/cases/(\d+)"')
NEXT_PAGE = re.compile(r'rel="next" href="([^"]+)"')
NEXT_PAGE_SHARE = 0.3  # of the cycles that also visit the queue's next page
TIMEOUT_S = 30.0
PAGE_KINDS = ("queue", "case")


@dataclass(frozen=True)
class StaffPlan:
    base_url: str
    usernames: tuple[str, ...]
    password: str
    think_ms: float
    seed: int


@dataclass
class StaffResult:
    """What the sessions of one level did: page times (ms) by kind, failures, sign-ins."""

    sessions: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    times: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in PAGE_KINDS})
    failures: list[str] = field(default_factory=list)
    retried: int = 0  # requests sent again on a fresh connection after the server closed an idle one

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.times.values())


class _PlainHttpJar(requests.cookies.RequestsCookieJar):
    """Keeps the app's Secure session cookie sendable over the benchmark's plain-HTTP loopback connection.

    The app marks its cookie Secure because its public URL is https (TLS ends in front of it in
    production); the benchmark talks to gunicorn directly, as that proxy would. requests copies the jar
    into a fresh one for every request, so a cookie policy would be lost: the flag is cleared instead.
    """

    def set_cookie(self, cookie: http.cookiejar.Cookie, *args: Any, **kwargs: Any) -> None:
        cookie.secure = False
        super().set_cookie(cookie, *args, **kwargs)


def sign_in(base_url: str, username: str, password: str) -> requests.Session:
    """A session signed in through the login form; raises RuntimeError when the form refuses."""
    s = requests.Session()
    s.cookies = _PlainHttpJar()
    page = s.get(base_url + "/console/login", timeout=TIMEOUT_S)
    token = CSRF.search(page.text)
    if page.status_code != 200 or token is None:
        found = "found" if token else "missing"
        raise RuntimeError(f"login page: HTTP {page.status_code}, CSRF token {found}")
    done = s.post(
        base_url + "/console/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
        timeout=TIMEOUT_S,
    )  # follows the redirect to the queue: a first (warm-up) page view
    if done.status_code != 200 or "/console/login" in done.url:
        raise RuntimeError(f"sign-in as {username} failed: HTTP {done.status_code} at {done.url}")
    return s


class _Session:
    """One member of staff: a signed-in session and its own random pauses."""

    def __init__(self, plan: StaffPlan, index: int, http: requests.Session) -> None:
        self.base_url = plan.base_url
        self.think_s = plan.think_ms / 1000
        self.rng = random.Random(plan.seed * 1000 + index)
        self.http = http

    def get(self, path: str, kind: str, expect: str, out: StaffResult, lock: threading.Lock) -> str | None:
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                resp = self.http.get(self.base_url + path, timeout=TIMEOUT_S, allow_redirects=False)
                body = resp.text
                break
            except requests.RequestException as exc:
                # A pause longer than gunicorn's keep-alive (5 s) lets the server close the idle
                # connection just as the next request goes out; a browser then sends it again.
                stale = isinstance(exc, requests.ConnectionError) and "Connection aborted" in str(exc)
                with lock:
                    if stale and attempt == 1:
                        out.retried += 1
                        continue
                    out.failures.append(f"{kind} {path}: {type(exc).__name__}: {str(exc)[:200]}")
                return None
        ms = (time.perf_counter() - started) * 1000
        with lock:
            if resp.status_code != 200 or expect not in body:
                out.failures.append(f"{kind} {path}: HTTP {resp.status_code}")
                return None
            out.times[kind].append(ms)
        return body

    def pause(self, stop: threading.Event) -> bool:
        """Think before the next page; False once stopped."""
        if self.think_s > 0:
            stop.wait(self.rng.uniform(0.5, 1.5) * self.think_s)
        return not stop.is_set()

    def run(self, stop: threading.Event, out: StaffResult, lock: threading.Lock) -> None:
        """Queue, a case from it, now and then the next page and a case from there; one pause before each."""
        while self.pause(stop):
            queue = self.get("/console/", "queue", "/console/cases/", out, lock)
            if queue is None or not self.open_a_case(queue, stop, out, lock):
                continue
            nxt = NEXT_PAGE.search(queue)
            if nxt and self.rng.random() < NEXT_PAGE_SHARE and self.pause(stop):
                more = self.get(html.unescape(nxt.group(1)), "queue", "/console/cases/", out, lock)
                if more is not None:
                    self.open_a_case(more, stop, out, lock)

    def open_a_case(self, queue: str, stop: threading.Event, out: StaffResult, lock: threading.Lock) -> bool:
        ids = CASE_LINK.findall(queue)
        if not ids or not self.pause(stop):
            return False
        return self.get(f"/console/cases/{self.rng.choice(ids)}", "case", "<h1", out, lock) is not None


def _run_level(sessions: Sequence[_Session], conn: Connection) -> None:
    """Run the sessions until the parent says stop; send back what they did."""
    stop, lock = threading.Event(), threading.Lock()
    out = StaffResult(sessions=len(sessions))
    threads = [
        threading.Thread(target=s.run, args=(stop, out, lock), name=f"staff-{i}", daemon=True)
        for i, s in enumerate(sessions)
    ]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    conn.send(("started", len(sessions)))
    message = conn.recv()  # ("stop",) from the parent; EOFError when it is gone
    stop.set()
    for t in threads:
        t.join(timeout=TIMEOUT_S + 5)
    out.wall_s = time.perf_counter() - t0
    out.cpu_s = time.process_time() - cpu0
    if message != ("stop",):
        raise EOFError(f"unexpected message {message!r}")
    conn.send(("stopped", out))


def _child_main(conn: Connection, plan: StaffPlan) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        started = time.perf_counter()
        http = [sign_in(plan.base_url, u, plan.password) for u in plan.usernames]
        sessions = [_Session(plan, i, h) for i, h in enumerate(http)]
        conn.send(("ready", round(time.perf_counter() - started, 2)))
        while True:
            message = conn.recv()
            if message[0] == "start":
                _run_level(sessions[: message[1]], conn)
            elif message[0] == "quit":
                return
    except EOFError:
        return  # the parent is gone: nothing to report to
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class StaffProcess:
    """The parent's handle on the staff process: sign everyone in, run a level, stop, close."""

    def __init__(self, plan: StaffPlan, *, timeout_s: float = 300.0) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child_main, args=(child, plan), name="staff", daemon=True)
        self.proc.start()
        child.close()
        self.sign_in_s = float(self._expect("ready", timeout_s))

    def _expect(self, kind: str, timeout_s: float) -> Any:
        if not self.conn.poll(timeout_s):
            raise RuntimeError(f"the staff process sent no {kind!r} within {timeout_s:g} s")
        got, value = self.conn.recv()
        if got != kind:
            raise RuntimeError(f"the staff process: {value}" if got == "error" else f"got {got!r}")
        return value

    def start(self, sessions: int) -> None:
        self.conn.send(("start", sessions))
        self._expect("started", 30)

    def stop(self) -> StaffResult:
        self.conn.send(("stop",))
        result: StaffResult = self._expect("stopped", TIMEOUT_S + 30)
        return result

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("quit",))
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()  # this process's own child, by its handle
            self.proc.join(timeout=5)
        self.conn.close()
