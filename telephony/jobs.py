"""The worker's telephony sweeps: spooled rescue messages into cases, and calls that never said goodbye.

Both are idempotent: a spool file is removed only after its message is stored with a case (a repeat
finds the recording and the case already there), and a call is closed once (ended_at is set).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from cases.models import Call
from infra.db import Database
from infra.sweeps import SweepReport
from telephony import service, spool
from telephony.callstate import find_call

log = logging.getLogger(__name__)


def replay_spool(db: Database, tel: service.Telephony, report: SweepReport | None = None) -> int:
    """Store what was spooled while the database was down (messages, call ends, recording statuses)."""
    return spool.replay(db, tel, report)


def close_stale_calls(
    db: Database, tel: service.Telephony, older_than: timedelta = timedelta(hours=2)
) -> int:
    """End calls whose status callback never came (Twilio does not retry it), keeping their reports."""
    cutoff = tel.clock() - older_than
    with db.read_session() as reader:
        sids = list(
            reader.scalars(
                select(Call.call_sid).where(Call.ended_at.is_(None), Call.created_at < cutoff).limit(200)
            )
        )
    for call_sid in sids:
        with db.writing() as session:
            call = find_call(session, call_sid)  # locked: a late webhook of the call waits its turn
            if call is None or call.ended_at is not None:
                continue
            service.close_unfinished_call(session, tel, call)
    return len(sids)


def spool_files(spool_dir: Path) -> list[Path]:
    return spool.files(spool_dir)
