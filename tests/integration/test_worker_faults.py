"""Worker faults are visible: an unwritable recordings folder, a full disk and a failing download.

Each runs through the real `flask --app app worker --once` process against the test's database and the
simulator's MediaServer, and proves: `last_error` is set after one sweep, the claim is given back, the
output names the fault and the exit status is not 0, the office's admin sees it in the console (an admin
of another office and a non-admin do not), the row is not tried again before its backoff, and it is
stored once the fault is gone.

How each fault is made, so that it works as root too (where chmod 0500 does not stop a write):
- an unwritable recordings folder: a plain file stands where the folder should be, so nobody can make
  the folder or write in it (mkdir answers ENOTDIR, the same for root as for anyone);
- a full disk: the download's `.part` file is a symlink to /dev/full, on which the kernel answers every
  write with ENOSPC, in the real worker process. The worker removes the failed `.part` (the symlink),
  which is also the fault going away. test_worker_fault_rows has a disk that fills part-way through;
- a failing download: the MediaServer answers 500 (MediaServer.inject) until its faults are cleared.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app import get_database
from cases.accounts import create_user
from cases.models import Case, Office
from cases.office_staff import grant_role
from cases.reference import display_reference
from cases.staff import Role
from infra.clock import utcnow
from infra.config import Config
from infra.files import make_private_dirs
from infra.sealed import RecordingCipher
from telephony.simulator.audio import generate_wav
from telephony.simulator.media_server import MediaServer
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, TwilioCaller
from tests.integration.test_console import login, set_locale, text
from tests.integration.test_ingestion import Hosted, Rig, TestClock, completed, new_recording_sid
from tests.integration.test_webhooks import walk
from tests.integration.test_worker import flask_cli, worker_env
from transcription import ingest
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus

pytestmark = pytest.mark.slow
PASSWORD = "worker-faults-pass-1"
BACKOFF_S = 2.0
# A violence report whose caller keys the province, confirms it and asks to be called back.
CALL_TO = {"10": ("1", "10", "1", "1"), "50": ("1", "50", "1", "1")}


@dataclass
class Site:
    app: Flask
    config: Config
    media: MediaServer

    def caller(self) -> TwilioCaller:
        return TwilioCaller(self.app.test_client(), "CA" + uuid.uuid4().hex)

    def message(self, province: str = "10", seconds: float = 3.0) -> Hosted:
        """A caller in `province` leaves a message; Twilio says it is complete: a draft case holds it."""
        caller = self.caller()
        sid = new_recording_sid()
        rec = Hosted(sid=sid, duration=round(seconds), url=self.media.register(sid, generate_wav(seconds)))
        walk(caller, *CALL_TO[province], rec, "1")
        assert completed(caller, rec) == 200
        return rec

    def recording(self, sid: str) -> Recording:
        with get_database(self.app).session() as session:
            row = session.scalar(select(Recording).where(Recording.recording_sid == sid))
            assert row is not None, sid
            return row

    def case_reference(self, sid: str) -> str:
        with get_database(self.app).session() as session:
            case = session.scalar(
                select(Case)
                .join(Recording, Recording.case_id == Case.id)
                .where(Recording.recording_sid == sid)
            )
            assert case is not None, f"no case holds {sid}"
            office = session.get(Office, case.office_id)
            assert office is not None and office.code == "10"  # Bangkok's draft
            return display_reference(case.reference)

    def worker_once(self) -> tuple[int, str]:
        env = worker_env(self.config, self.media, HOTLINE_DOWNLOAD_BACKOFF_SECONDS=str(BACKOFF_S))
        done = flask_cli(env, "worker", "--once")
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout

    def signed_in(self, username: str) -> FlaskClient:
        client = self.app.test_client()
        assert login(client, username, PASSWORD).status_code == 302
        return client

    def faults_page(self, username: str) -> tuple[int, str]:
        response = self.signed_in(username).get("/console/worker")
        return response.status_code, text(response)

    def change(self, sid: str, **values: Any) -> int:
        with get_database(self.app).session() as session:
            row = session.scalar(select(Recording).where(Recording.recording_sid == sid))
            assert row is not None
            for name, value in values.items():
                setattr(row, name, value)
            return row.id


@pytest.fixture
def site(app: Flask, config: Config) -> Iterator[Site]:
    with get_database(app).session() as session:
        offices = {
            o.code: o for o in session.scalars(select(Office).where(Office.code.in_(["central", "10", "50"])))
        }
        for username, role, code in (
            ("admin10", Role.ADMIN, "10"),  # Bangkok's admin: the cases here are Bangkok's
            ("admin50", Role.ADMIN, "50"),  # Chiang Mai's admin: another office
            ("op10", Role.OPERATOR, "10"),  # Bangkok's staff, not an admin
            ("admin0", Role.ADMIN, "central"),  # the central office's admin sees every office
        ):
            user = create_user(session, username, username, PASSWORD)
            grant_role(session, offices[code], user, role, actor=None)
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        yield Site(app, config, media)


def part_file(site: Site, sid: str) -> Path:
    """Where the worker writes the download before it is verified (see MediaClient.fetch)."""
    created = site.recording(sid).created_at
    return site.config.recordings_dir / f"{created:%Y}" / f"{created:%m}" / f"{sid}.wav.sealed.part"


def assert_fault_is_visible_then_mended(
    site: Site, sid: str, reason: str, line: str, *, counted: bool, mend: Callable[[], None]
) -> None:
    """One worker run meets the fault; it is on the row, in the output and the console; mended, stored."""
    before = utcnow()
    code, out = site.worker_once()
    after = utcnow()
    row = site.recording(sid)

    assert code != 0, out
    assert "transcription.downloads: 0 stored, 1 failed" in out, out
    assert f"  recording {row.id}: {line}" in out.splitlines(), out
    assert row.last_error == reason
    assert (row.claimed_by, row.claimed_until) == (None, None)  # given back at once, not at lease end
    assert row.storage_status == StorageStatus.PENDING  # never "unavailable" for it
    assert row.download_attempts == (1 if counted else 0)
    assert row.next_attempt_at is not None
    assert (
        before + timedelta(seconds=BACKOFF_S) <= row.next_attempt_at <= after + timedelta(seconds=BACKOFF_S)
    )
    assert not part_file(site, sid).exists() and not part_file(site, sid).is_symlink()

    reference = site.case_reference(sid)
    status, page = site.faults_page("admin10")
    assert status == 200
    assert f'id="recording-{row.id}"' in page and reason in page and reference in page
    assert "ข้อขัดข้องของระบบเบื้องหลัง" in page  # Thai first: the page and its link in the header
    assert 'aria-label="ขัดข้องหรือค้าง 1 รายการ"' in page
    status, page = site.faults_page("admin0")
    assert status == 200 and f'id="recording-{row.id}"' in page
    status, page = site.faults_page("admin50")
    assert status == 200 and f'id="recording-{row.id}"' not in page and reason not in page
    assert site.faults_page("op10")[0] == 403

    mend()
    # Not tried again before its backoff: a sweep a moment before next_attempt_at takes nothing.
    rig = Rig(site.app, site.config, site.media, TestClock(row.next_attempt_at - timedelta(milliseconds=1)))
    try:
        assert rig.jobs().sweep_downloads() == 0
    finally:
        rig.close()
    while utcnow() <= row.next_attempt_at:
        time.sleep(0.1)
    code, out = site.worker_once()
    assert code == 0, out
    assert "transcription.downloads: 1 stored, 0 failed" in out, out
    row = site.recording(sid)
    assert (row.storage_status, row.last_error) == (StorageStatus.STORED, None)
    assert row.stored_path
    assert RecordingCipher(site.config.recording_key).read_all(Path(row.stored_path)) == generate_wav(3.0)
    status, page = site.faults_page("admin10")
    assert status == 200 and f'id="recording-{row.id}"' not in page


def test_an_unwritable_recordings_folder(site: Site) -> None:
    sid = site.message().sid
    folder = site.config.recordings_dir
    make_private_dirs(folder.parent)
    folder.write_bytes(b"")  # a file where the recordings folder should be
    reason = f"cannot write {folder} (not a directory)"

    assert_fault_is_visible_then_mended(
        site, sid, reason, reason, counted=False, mend=lambda: folder.unlink()
    )
    assert site.media.request_count(site.media.recording_url(sid) + ".wav") == 1  # only the good try


def test_a_full_disk(site: Site) -> None:
    sid = site.message().sid
    part = part_file(site, sid)
    make_private_dirs(part.parent)
    part.symlink_to("/dev/full")  # every write: ENOSPC, from the kernel
    reason = f"cannot write {part.parent} (no space left on device)"

    def mended() -> None:
        assert not part.is_symlink()  # the worker removed its failed .part: the disk has room again

    assert_fault_is_visible_then_mended(site, sid, reason, reason, counted=False, mend=mended)


def test_a_failing_download(site: Site) -> None:
    sid = site.message().sid
    site.media.inject(sid, "http500", times=None)

    assert_fault_is_visible_then_mended(
        site,
        sid,
        "http 500",
        "http 500 (attempt 1)",
        counted=True,  # Twilio's fault: it counts toward the attempts that end in "unavailable"
        mend=lambda: site.media.clear_faults(sid),
    )


# ---- the console page ----------------------------------------------------------------------------------


def rows_on(page: str) -> set[str]:
    return set(re.findall(r'<tr id="((?:recording|transcript)-\d+)"', page))


def test_the_console_lists_each_kind_of_fault_to_the_admins_of_its_office(site: Site) -> None:
    now = utcnow()
    retrying, gave_up, stuck, untouched, healthy = (site.message().sid for _ in range(5))
    failed_transcript = site.message().sid
    chiang_mai = site.message("50").sid
    faults = {
        "retrying": site.change(
            retrying, last_error="http 500", download_attempts=1, next_attempt_at=now + timedelta(minutes=1)
        ),
        "gave_up": site.change(
            gave_up, storage_status=StorageStatus.UNAVAILABLE, last_error="http 404", download_attempts=6
        ),
        "stuck": site.change(stuck, claimed_by="a-dead-worker", claimed_until=now - timedelta(minutes=1)),
        # Due 20 minutes ago, and no worker came.
        "untouched": site.change(untouched, next_attempt_at=now - timedelta(minutes=20)),
    }
    site.change(healthy, storage_status=StorageStatus.STORED)
    rec_id = site.change(failed_transcript, storage_status=StorageStatus.STORED)
    cm_id = site.change(chiang_mai, last_error="http 503", next_attempt_at=now + timedelta(minutes=1))
    with get_database(site.app).session() as session:
        transcript = Transcript(
            recording_id=rec_id, status=TranscriptStatus.FAILED, reason="crashed", language="th", attempts=2
        )
        session.add(transcript)
        orphan = ingest.apply_status_callback(  # no case holds it yet
            session,
            recording_sid=new_recording_sid(),
            call_sid="CA" + uuid.uuid4().hex,
            status="completed",
            media_url=site.media.recording_url("RE" + "0" * 32),
            duration_s=3,
            language="th",
            now=now,
        )
        assert orphan is not None
        orphan.last_error = "http 500"
        session.flush()
        transcript_id, orphan_id = transcript.id, orphan.id
    with get_database(site.app).session() as session:
        before = {r.id: r.updated_at for r in session.scalars(select(Recording))}

    bangkok = {f"recording-{i}" for i in faults.values()} | {f"transcript-{transcript_id}"}
    admin = site.signed_in("admin10")
    page = text(admin.get("/console/worker"))
    assert rows_on(page) == bangkok
    for state, rec in faults.items():
        assert re.search(rf'<tr id="recording-{rec}" class="fault-{state}">', page), state
    assert re.search(rf'<tr id="transcript-{transcript_id}" class="fault-gave_up">', page)
    assert "failed: crashed" in page
    assert "ค้าง: ระบบเบื้องหลังที่ทำงานนี้หยุดไป" in page and "เลิกลองแล้ว: ระบบเบื้องหลังจะไม่ลองอีก" in page
    assert 'aria-label="ขัดข้องหรือค้าง 5 รายการ"' in page
    set_locale(admin, "en")
    page = text(admin.get("/console/worker"))
    assert rows_on(page) == bangkok
    assert "Worker faults" in page and "Stuck: the worker doing it stopped" in page
    assert "Waiting: no worker has taken it" in page and 'aria-label="5 failing or stuck"' in page

    assert rows_on(site.faults_page("admin50")[1]) == {f"recording-{cm_id}"}
    page = site.faults_page("admin0")[1]
    assert rows_on(page) == bangkok | {f"recording-{cm_id}", f"recording-{orphan_id}"}
    assert "ยังไม่มีเรื่อง" in page  # the one no case holds yet
    operator = site.signed_in("op10")
    assert operator.get("/console/worker").status_code == 403
    queue = text(operator.get("/console/"))
    assert "/console/worker" not in queue  # no link for those who may not see it
    assert "/console/worker" in text(admin.get("/console/"))

    with get_database(site.app).session() as session:  # looking changed nothing
        assert {r.id: r.updated_at for r in session.scalars(select(Recording))} == before
