"""Database engine, sessions and the declarative base shared by every feature's models."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from infra import deadline
from infra.clock import as_utc
from infra.extensions import Shared
from infra.files import private_sqlite_file

log = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT = 30.0  # seconds a writer waits for its turn before giving up
PG_CONNECT_TIMEOUT_S = 5  # libpq's connect_timeout: a server that accepts but never answers
PG_PING_AFTER_IDLE_S = 5.0  # a pooled connection idle this long is pinged before use

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Store aware datetimes as UTC and always hand back aware UTC values, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use infra.clock.utcnow()")
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def make_engine(
    url: str, *, echo: bool = False, read_only: bool = False, snapshot: bool = False, must_exist: bool = False
) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout, foreign keys and BEGIN IMMEDIATE.

    read_only: an engine whose transactions only read (Database.reading): plain BEGIN on SQLite, which
    does not queue for the write lock, and every connection refuses writes (SQLite's query_only,
    PostgreSQL's read-only transactions). Its own pool, so no connection flips between the two modes.
    must_exist: a SQLite file that is gone (a lost volume, a deleted file) is an error, never silently
    replaced by a new empty database; migrations create the file, the running service only opens it.
    Every wait on the database honours the caller's infra.deadline budget, when one is set.
    snapshot (with read_only): each transaction reads one snapshot (Database.read_session).
    """
    if url.startswith("sqlite"):
        path = make_url(url).database
        on_disk = bool(path) and path != ":memory:"
        kwargs: dict[str, Any] = {}
        if on_disk:
            private_sqlite_file(os.path.abspath(str(path)), create=not must_exist)
        if must_exist and on_disk:
            # mode=rw: opening fails when the file is missing instead of creating an empty database.
            target = f"file:{quote(os.path.abspath(str(path)))}?mode=rw"
            kwargs["creator"] = lambda: sqlite3.connect(
                target, uri=True, timeout=SQLITE_BUSY_TIMEOUT, check_same_thread=False
            )
        engine = create_engine(
            url,
            echo=echo,
            hide_parameters=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False},
            **kwargs,
        )
        _tune_sqlite(engine, read_only=read_only, path=str(path) if on_disk else None)
        if read_only and snapshot:
            _begin_deferred(engine)
        return engine
    if read_only and snapshot:
        # A page's SELECTs see one state of the database, as on SQLite; a read-only transaction
        # cannot fail to serialize, so REPEATABLE READ costs nothing more than READ COMMITTED.
        return _postgresql(url, echo, 10, 20, isolation_level="REPEATABLE READ").execution_options(
            postgresql_readonly=True
        )
    if read_only:
        # One quick SELECT per webhook: a small pool beside the writers' is plenty.
        return _postgresql(url, echo, 4, 8).execution_options(postgresql_readonly=True)
    return _postgresql(url, echo, 10, 20)


def _postgresql(url: str, echo: bool, pool_size: int, max_overflow: int, **kwargs: Any) -> Engine:
    # hide_parameters: SQL errors in logs must not carry the values (personal data) that were bound.
    engine = create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
        **kwargs,
    )
    _bound_postgresql(engine)
    return engine


def _bound_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A lock held by another connection, or a server that stalls: the transaction gives up when the
        # request's budget does. The session's statement_timeout is set only when it must change: under
        # load a webhook's few round trips are what its latency is made of (each one gives up the GIL
        # and waits to get it back behind the threads rendering pages), so no SET per transaction.
        left = deadline.check("a PostgreSQL transaction")
        info = conn.connection.info
        ms = 0 if left is None else max(1, int(left * 10) * 100)  # 100 ms steps, as for SQLite
        if info.get("timeout_ms") != ms:
            conn.exec_driver_sql(f"SET statement_timeout = {ms}")
            info["timeout_ms"] = ms

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn: Any) -> None:
        # A SET in a transaction that rolls back is undone: the next transaction sets it again.
        if not conn.invalidated:
            conn.connection.info.pop("timeout_ms", None)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # A ping only for a connection idle a while (the server may have restarted meanwhile): one that
        # was in use a moment ago is alive, and a ping per checkout was a round trip on every request.
        # Should the server restart under load, the first request on a dead connection fails (its
        # webhook answers from the spool) and SQLAlchemy then drops every older connection of the pool.
        if time.monotonic() - record.info.get("idle_since", 0.0) < PG_PING_AFTER_IDLE_S:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as exc:
            raise DisconnectionError(f"PostgreSQL connection is gone ({type(exc).__name__})") from exc


def _busy_ms() -> int:
    """SQLite's busy timeout for the next wait: the request's budget if one is set, else the default."""
    left = deadline.check("a SQLite transaction")
    if left is None:
        return int(SQLITE_BUSY_TIMEOUT * 1000)
    # Rounded down to 100 ms: webhooks start with nearly the same budget, so a pooled connection seldom
    # needs the PRAGMA again, and the wait still ends inside the budget.
    return max(1, int(left * 10) * 100)


def _set_busy_timeout(dbapi_connection: Any, info: dict[str, Any]) -> None:
    ms = _busy_ms()
    if info.get("busy_ms") != ms:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={ms}")
        cursor.close()
        info["busy_ms"] = ms


def _tune_sqlite(engine: Engine, *, read_only: bool, path: str | None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()
        record.info["busy_ms"] = int(SQLITE_BUSY_TIMEOUT * 1000)
        if path is not None:
            record.info["file_id"] = _file_id(path)

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if path is not None and _file_id(path) != record.info.get("file_id"):
            # The file was deleted or replaced under a pooled connection: writing on would store the
            # message in a file nobody will read again. The pool drops this connection and opens the
            # path afresh (which fails while the file is missing).
            raise DisconnectionError(f"SQLite file {path} is missing or was replaced")
        if read_only:
            _set_busy_timeout(dbapi_connection, record.info)

    if read_only:
        # Readers never write, so they need not queue for the write lock: WAL lets them read beside the
        # writer. No BEGIN either: each statement reads its own consistent snapshot, which is all the
        # one-SELECT readers (telephony.service.prepare_*) need, and saves two statements a request.
        return

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A deferred transaction that reads and then writes fails with "database is locked" without
        # waiting; IMMEDIATE takes the write lock up front and honours the busy timeout, which is the
        # request's remaining budget when it has one.
        _set_busy_timeout(conn.connection.dbapi_connection, conn.connection.info)
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _begin_deferred(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A deferred BEGIN: in WAL mode a transaction that only reads holds a snapshot of the database
        # and never the write lock, so the several SELECTs of a page agree with one another.
        conn.exec_driver_sql("BEGIN")


class _WriteGate:
    """Where writers of one SQLite file queue: threads on an RLock, processes on a lock file beside it.

    SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms between tries, so a writer of another process
    (another gunicorn worker) slept through most releases. The lock file is polled every millisecond at
    most. It only orders writers: BEGIN IMMEDIATE still takes SQLite's lock, so writers that pass by the
    gate (other programs, a lock file that cannot be opened) stay correct.
    """

    def __init__(self, database: str | None, timeout: float) -> None:
        self._lock = threading.RLock()
        self._path = f"{database}-write.lock" if database and database != ":memory:" else None
        self._timeout = timeout
        self._fd: int | None = None
        self._pid = 0
        self._depth = 0  # writing() nests in one thread: the file is locked by the outermost only

    def __enter__(self) -> None:
        left = deadline.check("the turn to write")
        if not self._lock.acquire(timeout=-1 if left is None else left):
            raise deadline.DeadlineExceeded(f"no turn to write to {self._path} within the request's budget")
        try:
            if self._depth == 0:
                self._lock_file()
        except BaseException:
            self._lock.release()
            raise
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _lock_file(self) -> None:
        fd = self._file()
        if fd is None:
            return
        left = deadline.remaining()
        budget = self._timeout if left is None else min(left, self._timeout)
        ends = time.monotonic() + budget
        pause = 0.00005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > ends:
                    raise deadline.DeadlineExceeded(
                        f"no turn to write to {self._path} in {budget:.1f} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def _file(self) -> int | None:
        if self._path is None:
            return None
        if self._pid != os.getpid():
            # Opened per process: after a fork, the parent's descriptor shares the parent's lock.
            if self._fd is not None:
                os.close(self._fd)
            self._fd, self._pid = None, os.getpid()
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                log.warning("no lock file for SQLite writers (%s): processes meet at SQLite's lock", exc)
        return self._fd


class Database:
    """An engine and its session factory, owned by the app (never created at import time)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo, must_exist=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Readers have an engine (and pool) of their own; an in-memory SQLite database exists only on
        # its own connection, so there they share the writers' engine (and their write lock).
        memory = url.startswith("sqlite") and make_url(url).database in (None, "", ":memory:")
        self._reader = self.engine if memory else make_engine(url, echo=echo, read_only=True, must_exist=True)
        # Console pages and exports read through Sessions of a third engine: a page runs several
        # SELECTs that must agree (the queue and its counts), so its transactions BEGIN (deferred on
        # SQLite: a snapshot, never the write lock) where the webhooks' reader has no BEGIN at all;
        # and its own pool, so that staff reloading pages never leave a webhook waiting for a connection.
        self._pages = (
            self.engine
            if memory
            else make_engine(url, echo=echo, read_only=True, snapshot=True, must_exist=True)
        )
        self._read_sessions = sessionmaker(self._pages, expire_on_commit=False)
        # SQLite has one writer at a time. Writers queue here (threads wake the moment the writer before
        # them is done, processes within a millisecond) instead of polling in SQLite's busy handler,
        # whose back-off sleeps (up to 100 ms) overshoot the release.
        self._write_gate: AbstractContextManager[object] = (
            _WriteGate(make_url(url).database, SQLITE_BUSY_TIMEOUT)
            if url.startswith("sqlite")
            else nullcontext()
        )

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session for one short write transaction (a webhook): committed on success, else rolled back."""
        with self._write_gate, self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection in a transaction that only reads: outside the write gate, no SQLite write lock.

        What it reads may be overtaken by a writer the moment after: a write that depends on it must
        check, under writing(), that the row is still as read (see telephony.service.save_step). On
        SQLite each statement reads its own snapshot (no BEGIN): read what belongs together in one.
        A plain connection, not a Session: the hot path that uses it reads a few columns with Core.
        """
        with self._reader.connect() as conn, conn.begin():
            yield conn

    def read_session(self) -> Session:
        """A Session that only reads (console pages, exports), in one snapshot; the caller closes it.

        It never waits for the write lock, and it refuses every write: SQLite's query_only, PostgreSQL's
        READ ONLY transactions. (An in-memory SQLite database has one connection: there it is a plain
        Session of the writers' engine.) Writes go through writing(), on a session of their own.
        """
        return self._read_sessions()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
        if self._reader is not self.engine:
            self._reader.dispose()
        if self._pages is not self.engine:
            self._pages.dispose()


# The database of the running app, shared by the webhooks, the console and the commands.
database: Shared[Database] = Shared("hotline.db")
