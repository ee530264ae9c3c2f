"""The keys of personal data at rest: the start's check that they open what is stored, and rotation.

Numbers (and the call state that holds numbers being keyed) are Fernet tokens under HOTLINE_DATA_KEY;
recordings are sealed files under HOTLINE_RECORDING_KEY (infra.sealed). Either variable may list several
keys, newest first: the first encrypts, every one decrypts. `rotate` re-encrypts everything under the
first key, in batches, each committed on its own: a run that is stopped (killed, a fault) is resumed by
running it again, which skips what is already under the first key. It also seals any recording still
stored as plain audio (from before sealing existed), so `db upgrade` runs it for the recordings. Every
other sealed file under the data dir (one no row names yet: a download stored as its row was being
written) is sealed anew too; the spool's numbers are telephony's (app.py hands that step in).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cases import search_index
from cases.models import Call, CallbackAttempt, Case
from cases.staff import PhoneVerification
from infra.crypto import DataKeyError, FieldCipher
from infra.db import Database
from infra.sealed import HEADER, RecordingCipher, RecordingKeyError, SealBroken, read_header
from transcription.models import Recording, StorageStatus

# telephony.callstate's mark of an encrypted value inside a call's stored state and last answer (cases
# may not import telephony: the prefix is a stored format, repeated here).
ENCRYPTED = "enc:"
BATCH = 200
Progress = Callable[[str], None]
# The temporary file of a file being sealed anew: a `.part` (backups skip it), named apart from a
# download's own `.part` so that a rotation's leftover (a run killed mid-file) is known as one.
ROTATING = ".rotate.part"
# Under the data dir but holding nobody's recordings: the joined Whisper model (backups skip it too).
NOT_DATA = ("models",)
# A test's fixed point to kill a rotation at (tests/integration/test_rotation_kill.py): "numbers:N" stops
# once N numbers are re-encrypted and committed, "recordings:N" with the next recording's new file half
# written. Unset, as it always is outside that test, it changes nothing.
STALL_VARIABLE = "HOTLINE_TEST_ROTATE_STALL"

# Columns holding one Fernet token each; the calls' state and last answer hold "enc:"-marked ones.
TOKEN_COLUMNS: tuple[Any, ...] = (
    Call.__table__.c.caller_number_enc,
    Case.__table__.c.callback_number_enc,
    CallbackAttempt.__table__.c.operator_number_enc,
    PhoneVerification.__table__.c.number_enc,
)
_CALLS: Table = Call.__table__  # type: ignore[assignment]


class KeyCheckFailed(RuntimeError):
    """A configured key cannot open what is stored; the message names the variable and what it cannot read."""


@dataclass
class RotationReport:
    """What a rotation did, by kind: re-encrypted, already current, and what could not be read."""

    done: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def add(self, kind: str, rotated: int, current: int) -> None:
        self.done[kind] = self.done.get(kind, 0) + rotated
        self.current[kind] = self.current.get(kind, 0) + current


@dataclass(frozen=True)
class Stall:
    """Where a test stops a rotation for good (STALL_VARIABLE): it says so on stdout, then waits to be
    killed. Never set in service."""

    kind: str
    after: int
    say: Progress

    @classmethod
    def from_env(cls, env: Mapping[str, str], say: Progress) -> Stall | None:
        kind, _, after = env.get(STALL_VARIABLE, "").partition(":")
        if kind not in ("numbers", "recordings") or not after.isdigit():
            return None
        return cls(kind, int(after), say)

    def at(self, kind: str, done: int) -> bool:
        return kind == self.kind and done >= self.after

    def after_each(self, progress: Progress, report: RotationReport) -> Progress:
        """`progress`, which stalls once the numbers done reach `after` (it is told after each commit)."""

        def told(line: str) -> None:
            progress(line)
            if self.at("numbers", sum(report.done.values())):
                self.wait()

        return told

    def wait(self) -> None:
        self.say(f"rotation stalled ({STALL_VARIABLE})")
        time.sleep(600)  # the test kills it long before
        raise SystemExit(f"{STALL_VARIABLE}: the stalled rotation was never killed")


# ---- numbers -------------------------------------------------------------------------------------------


def _rotate_token(cipher: FieldCipher, token: str) -> str | None:
    """The token under the current key, or None when it already is."""
    return None if cipher.is_current(token) else cipher.rotate(token)


def _rotate_marked(cipher: FieldCipher, value: Any) -> Any:
    if isinstance(value, str) and value.startswith(ENCRYPTED):
        rotated = _rotate_token(cipher, value[len(ENCRYPTED) :])
        return None if rotated is None else ENCRYPTED + rotated
    return None


def _rotate_state(cipher: FieldCipher, state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A call's IVR state with its encrypted values under the current key, or None if nothing changed."""
    if not state:
        return None
    copy = json.loads(json.dumps(state))
    changed = False
    for bucket in ("vars", "pending"):
        values = copy.get(bucket) or {}
        for key, value in list(values.items()):
            rotated = _rotate_marked(cipher, value)
            if rotated is not None:
                values[key], changed = rotated, True
    return copy if changed else None


def _batches(db: Database, table: Table, columns: list[Any]) -> Iterator[list[Any]]:
    """The rows of `table` with a value in any of `columns`, by id, a batch at a time (each read anew)."""
    last = 0
    where: Any = columns[0].is_not(None)
    for column in columns[1:]:
        where = where | column.is_not(None)
    extra = [table.c.updated_at] if "updated_at" in table.c else []
    while True:
        with db.session() as session:
            rows = session.execute(
                select(table.c.id, *columns, *extra)
                .where(where, table.c.id > last)
                .order_by(table.c.id)
                .limit(BATCH)
            ).all()
        if not rows:
            return
        last = rows[-1].id
        yield list(rows)


def rotate_numbers(
    db: Database, cipher: FieldCipher, report: RotationReport, progress: Progress, stall: Stall | None = None
) -> None:
    """Re-encrypt every number token (and the calls' encrypted state) under HOTLINE_DATA_KEY's first key."""
    if stall is not None:
        progress = stall.after_each(progress, report)
    for column in TOKEN_COLUMNS:
        _rotate_column(db, cipher, column, report, progress)
    kind = "calls.ivr_state/last_response"
    for rows in _batches(db, _CALLS, [_CALLS.c.ivr_state, _CALLS.c.last_response]):
        rotated = 0
        with db.session() as session:
            for row in rows:
                values: dict[str, Any] = {}
                state = _rotate_state(cipher, row.ivr_state)
                answer = _rotate_marked(cipher, row.last_response)
                if state is not None:
                    values["ivr_state"] = state
                if answer is not None:
                    values["last_response"] = answer
                if values:
                    _write(session, _CALLS, row, values)
                    rotated += 1
        report.add(kind, rotated, len(rows) - rotated)
        progress(f"numbers: {kind}: {report.done[kind]} re-encrypted, {report.current[kind]} already current")
    # The search hashes of the numbers' last digits are keyed by the first key too: made anew under it
    # (until then a search also looks for the older keys' hashes).
    rehashed = search_index.fill_digit_hashes(db, cipher, only_missing=False)
    progress(f"numbers: search hashes: {rehashed} made under the first key")


def _rotate_column(
    db: Database, cipher: FieldCipher, column: Any, report: RotationReport, progress: Progress
) -> None:
    table: Table = column.table
    kind = f"{table.name}.{column.name}"
    for rows in _batches(db, table, [column]):
        rotated = 0
        with db.session() as session:
            for row in rows:
                new = _rotate_token(cipher, row[1])
                if new is not None:
                    _write(session, table, row, {column.name: new})
                    rotated += 1
        report.add(kind, rotated, len(rows) - rotated)
        progress(f"numbers: {kind}: {report.done[kind]} re-encrypted, {report.current[kind]} already current")


def _write(session: Session, table: Table, row: Any, values: dict[str, Any]) -> None:
    # The row's own updated_at stays: a key change is not a change of the call or case (replay windows
    # and the queue's ages read it).
    if "updated_at" in table.c:
        values = {**values, "updated_at": row.updated_at}
    session.execute(update(table).where(table.c.id == row.id).values(**values))


# ---- recordings ----------------------------------------------------------------------------------------


def rotate_recordings(
    db: Database,
    sealer: RecordingCipher,
    report: RotationReport,
    progress: Progress,
    *,
    plain_only: bool = False,
    stall: Stall | None = None,
) -> None:
    """Seal every stored recording under HOTLINE_RECORDING_KEY's first key (plain ones too), one file at
    a time, each replaced atomically: a run stopped half-way leaves every file whole under one key.
    `plain_only` seals only the plain ones (`db upgrade`), leaving sealed files under their key."""
    last, kind = 0, "recordings"
    while True:
        with db.session() as session:
            rows = session.execute(
                select(Recording.id, Recording.stored_path, Recording.sha256)
                .where(Recording.storage_status == StorageStatus.STORED, Recording.stored_path.is_not(None))
                .where(Recording.id > last)
                .order_by(Recording.id)
                .limit(BATCH)
            ).all()
        if not rows:
            return
        last = rows[-1].id
        rotated = current = 0
        for rec_id, stored, sha256 in rows:
            done = report.done.get(kind, 0) + rotated
            midway = stall.wait if stall is not None and stall.at("recordings", done) else None
            try:
                if reseal(sealer, Path(str(stored)), sha256, plain_only=plain_only, midway=midway):
                    rotated += 1
                else:
                    current += 1
            except (OSError, SealBroken, RecordingKeyError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                report.failed.append(f"recording {rec_id}: {reason}")
        report.add(kind, rotated, current)
        progress(f"recordings: {report.done[kind]} sealed anew, {report.current[kind]} already current")


def reseal(
    sealer: RecordingCipher,
    path: Path,
    sha256: str | None,
    *,
    plain_only: bool = False,
    midway: Callable[[], None] | None = None,
) -> bool:
    """Seal the file at `path` with the current key (a plain one is checked against `sha256` first);
    False when it already is. The new file replaces the old one whole (write, fsync, rename).
    `midway` is called with the new file begun on disk (Stall)."""
    with path.open("rb") as fh:
        header = read_header(fh.read(HEADER.size))
    if header is not None and (plain_only or header.key_id == sealer.current_id):
        return False
    # ".part", the suffix of every file being written under the data dir: a backup never copies it.
    tmp = path.with_name(path.name + ROTATING)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, sealer.writer(out) as writer:
            if header is None:
                plain = path.read_bytes()
                if sha256 is not None and hashlib.sha256(plain).hexdigest() != sha256:
                    raise SealBroken("the plain recording does not match its checksum: left as it is")
                writer.write(plain)
            else:
                with sealer.open(path) as sealed:
                    for chunk in sealed.chunks(0, sealed.plain_size):
                        writer.write(chunk)
            if midway is not None:
                out.flush()
                midway()
            writer.close()
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def rotate_sealed_files(
    data_dir: Path, sealer: RecordingCipher, report: RotationReport, progress: Progress
) -> None:
    """Seal anew every other sealed file under the data dir (after rotate_recordings, which did those the
    rows name): a recording stored while its row was not yet written, anything sealed outside a row.
    A rotation's own leftover from a run that was killed is removed first."""
    kind = "other sealed files"
    rotated = current = 0
    for path in _data_files(data_dir):
        if path.name.endswith(ROTATING):
            path.unlink(missing_ok=True)  # one rotation at a time: this one is a killed run's
            continue
        if path.name.endswith(".part"):
            continue  # a download being written (sealed as it arrives, under the worker's key)
        try:
            with path.open("rb") as fh:
                header = read_header(fh.read(HEADER.size))
            if header is None:
                continue  # not sealed: the spool's JSON, a plain recording (db upgrade's, with its row)
            if header.key_id == sealer.current_id:
                current += 1
                continue
            reseal(sealer, path, None)
            rotated += 1
        except FileNotFoundError:
            continue  # erased meanwhile (retention, erasure)
        except (OSError, SealBroken, RecordingKeyError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            report.failed.append(f"{path.relative_to(data_dir)}: {reason}")
    report.add(kind, rotated, current)
    progress(f"{kind}: {report.done[kind]} sealed anew, {report.current[kind]} already current")


def _data_files(data_dir: Path) -> Iterator[Path]:
    """The data dir's regular files, the model folder left out, no symlink followed."""
    if not data_dir.is_dir():
        return
    for root, dirs, names in os.walk(data_dir):
        here = Path(root)
        if here == data_dir:
            dirs[:] = [d for d in dirs if d not in NOT_DATA]
        dirs.sort()
        for name in sorted(names):
            path = here / name
            if not path.is_symlink() and path.is_file():
                yield path


# ---- the start's check --------------------------------------------------------------------------------


def check_keys(db: Database, cipher: FieldCipher, sealer: RecordingCipher) -> None:
    """Refuse (KeyCheckFailed) when the configured keys cannot open the oldest and newest of what is
    stored: each number column's tokens and the stored recordings' files. A database without the tables
    (before `db upgrade`) or not there at all has nothing to check."""
    try:
        with db.read_session() as session:
            where = unreadable_numbers(session, cipher)
            if where is not None:
                raise KeyCheckFailed(
                    f"HOTLINE_DATA_KEY cannot decrypt the numbers stored in {where}: "
                    "the key that encrypted them is missing or wrong"
                )
            paths = _ends(session, Recording.__table__.c.stored_path)
    except DBAPIError:
        return
    for stored in paths:
        _check_recording(sealer, Path(stored))


def unreadable_numbers(session: Session, cipher: FieldCipher, *, tolerant: bool = False) -> str | None:
    """The first `table.column` whose oldest or newest number `cipher` cannot decrypt; None if all open.
    `tolerant` passes over a column the database lacks (a backup of an older schema)."""
    for column in TOKEN_COLUMNS:
        try:
            tokens = _ends(session, column)
        except DBAPIError:
            if not tolerant:
                raise
            session.rollback()
            continue
        for token in tokens:
            try:
                cipher.decrypt(token)
            except DataKeyError:
                return f"{column.table.name}.{column.name}"
    return None


def _ends(session: Session, column: Any) -> list[str]:
    """The values of `column` in its table's first and last rows that have one."""
    table: Any = column.table
    values = []
    for order in (table.c.id.asc(), table.c.id.desc()):
        value = session.scalar(select(column).where(column.is_not(None)).order_by(order).limit(1))
        if value is not None:
            values.append(value)
    return values


def _check_recording(sealer: RecordingCipher, path: Path) -> None:
    try:
        with path.open("rb") as fh:
            header = read_header(fh.read(HEADER.size))
    except (OSError, SealBroken):
        return  # a missing or damaged file is the worker's fault to report, not a key's
    if header is not None and not sealer.knows(header.key_id):
        raise KeyCheckFailed(
            f"HOTLINE_RECORDING_KEY cannot open the recordings in {path.parent}: "
            "the key that sealed them is missing or wrong"
        )
