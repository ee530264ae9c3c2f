"""What Twilio told us while the database could not take it: kept on disk, replayed when it is back.

A webhook that cannot reach the database within its budget still answers the caller in time, and keeps
what matters in a spool file (mode 0600, written whole or not at all): a message (the recording's SID,
URL and length), a call's end, a recording's status, with the caller's number encrypted with the data key,
never in the clear. The worker replays the files into the same service functions the webhooks use; they
are idempotent and give the same result in any order (telephony.endings), so a file replayed twice, or
after the live request got through after all, changes nothing more.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cases.keys import Progress, RotationReport
from cases.models import Call
from infra.clock import utcnow
from infra.crypto import FieldCipher, mask_phone
from infra.db import Database
from infra.files import make_private_dirs
from infra.sweeps import SweepReport
from telephony import params, service
from telephony.callstate import Telephony, find_call

log = logging.getLogger(__name__)
MESSAGE, CALL_STATUS, RECORDING_STATUS = "message", "call_status", "recording_status"
# Applied in this order in one replay: a call's end and a recording's status find the call and message
# the earlier files made (the service gives the same end state in any order; this only saves a sweep).
KINDS = (MESSAGE, RECORDING_STATUS, CALL_STATUS)
_FIELDS = (
    "CallSid",
    "RecordingSid",
    "RecordingUrl",
    "RecordingDuration",
    "RecordingStatus",
    "CallStatus",
    "CallDuration",
)


def keep(tel: Telephony, kind: str, form: Mapping[str, str]) -> Path | None:
    """Write what this request carried for later; None if it carried nothing to keep or the disk failed."""
    if kind not in KINDS:
        raise ValueError(f"unknown spool kind {kind!r}")
    if not params.CALL_SID.match(form.get("CallSid", "")):
        return None
    if kind in (MESSAGE, RECORDING_STATUS) and params.recording(form) is None:
        return None
    entry: dict[str, str] = {k: form[k][:500] for k in _FIELDS if form.get(k)}
    entry["kind"] = kind
    caller = params.caller_number(form.get("From"))
    if caller:
        entry["caller_enc"] = tel.cipher.encrypt(caller)
    entry["received_at"] = utcnow().isoformat()
    try:
        return _write(tel.spool_dir, kind, entry)
    except OSError:
        log.exception("spool folder %s not writable: what Twilio sent is only at Twilio now", tel.spool_dir)
        return None


def _write(spool_dir: Path, kind: str, entry: Mapping[str, str]) -> Path:
    make_private_dirs(spool_dir)
    name = f"{utcnow().strftime('%Y%m%dT%H%M%S%f')}-{kind}-{uuid.uuid4().hex[:12]}.json"
    path = spool_dir / name
    part = spool_dir / f".{name}.part"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(entry, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, path)  # a reader never sees half a file
    return path


def files(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("*.json")) if spool_dir.is_dir() else []


def rotate_numbers(spool_dir: Path, cipher: FieldCipher, report: RotationReport, progress: Progress) -> None:
    """`keys rotate`'s step for the spool: each file's caller number under HOTLINE_DATA_KEY's first key.

    A file is rewritten whole (as `_write` does) and only while it is still there: one the worker replays
    meanwhile is gone, and a replay of either version gives the same result.
    """
    kind, rotated, current = "spool files", 0, 0
    for path in files(spool_dir):
        try:
            entry: Any = json.loads(path.read_text(encoding="utf-8"))
            token = entry.get("caller_enc") if isinstance(entry, dict) else None
            if not isinstance(token, str) or cipher.is_current(token):
                current += 1
                continue
            entry["caller_enc"] = cipher.rotate(token)
            part = path.with_name(f".{path.name}.part")
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh)
                fh.flush()
                os.fsync(fh.fileno())
            if path.exists():
                os.replace(part, path)
                rotated += 1
            else:
                part.unlink(missing_ok=True)
        except FileNotFoundError:
            continue  # replayed and removed meanwhile
        except (OSError, ValueError) as exc:  # DataKeyError is a ValueError, as is bad JSON
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            report.failed.append(f"spool file {path.name}: {why}")
    report.add(kind, rotated, current)
    progress(f"numbers: {kind}: {report.done[kind]} re-encrypted, {report.current[kind]} already current")


def replay(db: Database, tel: Telephony, report: SweepReport | None = None) -> int:
    """Apply every spool file to the database; remove each once it is stored. Returns how many were.

    A file left in place (unreadable, or the database still refusing it) is a fault in `report`.
    """
    report = report if report is not None else SweepReport()
    report.expect("stored")
    entries: list[tuple[int, Path, dict[str, str]]] = []
    for path in files(tel.spool_dir):
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (OSError, ValueError):
            log.error("spool file %s is unreadable; left in place for a person to look at", path.name)
            report.fault("unreadable", f"spool file {path.name}: unreadable, left for a person")
            continue
        entry = {str(k): str(v) for k, v in data.items()}
        kind = entry.get("kind", MESSAGE)  # files of the first version held messages only
        entries.append((KINDS.index(kind) if kind in KINDS else len(KINDS), path, entry))
    done = 0
    for _rank, path, entry in sorted(entries, key=lambda e: (e[0], e[1].name)):
        try:
            with db.writing() as session:
                _apply(session, tel, entry)
        except Exception as exc:
            log.exception("spool file %s could not be stored yet; will retry", path.name)
            report.fault("waiting", f"spool file {path.name}: not stored yet ({type(exc).__name__})")
            continue
        path.unlink(missing_ok=True)
        done += 1
        report.count("stored")
        log.info("spool file %s stored", path.name)
    return done


def _apply(session: Any, tel: Telephony, entry: dict[str, str]) -> None:
    kind = entry.get("kind", MESSAGE)
    if kind == CALL_STATUS:
        service.call_status(session, tel, entry)
    elif kind == RECORDING_STATUS:
        service.recording_status(session, tel, entry)
    elif kind == MESSAGE:
        rec = params.recording(entry)
        if rec is None or rec.duration_s == 0:
            return
        call = find_call(session, params.call_sid(entry))
        if call is None:
            call = Call(call_sid=entry["CallSid"], status="in-progress", language=tel.flow.default_language)
            if entry.get("caller_enc"):
                number = tel.cipher.decrypt(entry["caller_enc"])
                call.caller_number_enc, call.caller_number_masked = entry["caller_enc"], mask_phone(number)
            session.add(call)
            session.flush()
        service.keep_message(session, tel, call, rec)
    else:
        raise ValueError(f"spool file of unknown kind {kind!r}")
