"""`keys rotate` over everything sealed: the spool's numbers, sealed files no row names, a run killed
mid-file and run again; a call's recording stored, rotated and still played by range; keys parsed once.

After each rotation the old keys are dropped: every number, spool file and sealed file under the data dir
must open with the new keys alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import make_url, select

import app as app_module
from app import create_app, get_database
from cases import accounts, keys
from cases.models import CENTRAL_OFFICE_CODE, Call, Case, Office
from cases.staff import Role, RoleAssignment
from console import playback
from infra.config import Config
from infra.crypto import FieldCipher
from infra.sealed import HEADER, MAGIC, RecordingCipher, is_sealed, new_recording_key, read_header
from telephony import jobs as telephony_jobs
from telephony import spool, webhooks
from telephony.simulator.audio import generate_wav
from tests.conftest import ACCOUNT_SID, TwilioCaller, _migrated_with_offices, make_config
from tests.integration import test_console, test_ingestion
from tests.integration.test_console import World, fetch, login
from tests.integration.test_ingestion import Rig, completed
from tests.integration.test_webhooks import FULL_CALL, hang_up, walk
from tests.support.seed import tone_wav
from transcription.models import Recording, StorageStatus

world = test_console.world  # the console's seeded staff, cases and (sealed) recordings
rig, caller = test_ingestion.rig, test_ingestion.caller  # a call through the webhooks, a media server
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# ---- the pieces ----------------------------------------------------------------------------------------


class NewKeys:
    """A data key and a recording key never used before, and the settings that list them first."""

    def __init__(self, config: Config) -> None:
        self.data, self.recording = Fernet.generate_key().decode(), new_recording_key()
        self.rotating = {
            "data_key": f"{self.data},{config.data_key}",
            "recording_key": f"{self.recording},{config.recording_key}",
        }
        self.alone = {"data_key": self.data, "recording_key": self.recording}


Instance = Callable[..., Flask]


@pytest.fixture
def instance(config: Config) -> Iterator[Instance]:
    """Apps on the same database and data dir under other keys (`instance(data_key=…, recording_key=…)`),
    their connections closed after the test."""
    made: list[Flask] = []

    def make(**keys_: str) -> Flask:
        app = create_app(config.with_overrides(**keys_))
        app.testing = True
        made.append(app)
        return app

    yield make
    for app in made:
        get_database(app).dispose()


def sealed_files(data_dir: Path) -> list[Path]:
    """Every file under the data dir that starts as a sealed file does (whatever its name)."""
    found = []
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and path.relative_to(data_dir).parts[0] != "models":
            with path.open("rb") as fh:
                if fh.read(len(MAGIC)) == MAGIC:
                    found.append(path)
    return found


def plain_audio(data_dir: Path) -> list[Path]:
    """Files holding audio in the clear: RIFF at the start, or a .wav that is not sealed."""
    return [
        p
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and (p.read_bytes()[:4] == b"RIFF" or (p.suffix == ".wav" and not is_sealed(p)))
    ]


def spool_message(app: Flask, number: str = "+66812345678") -> Path:
    """What a webhook keeps when the database is down: a message with the caller's number encrypted."""
    sid = uuid.uuid4().hex
    form = {
        "CallSid": "CA" + sid,
        "RecordingSid": "RE" + sid,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE{sid}",
        "RecordingDuration": "4",
        "From": number,
    }
    path = spool.keep(webhooks.telephony(app), spool.MESSAGE, form)
    assert path is not None
    return path


def populate(app: Flask, config: Config, calls: int, recordings: int) -> None:
    """More callers' numbers and stored recordings, so a rotation has several batches and files to do."""
    wav = tone_wav()
    folder = config.recordings_dir / "2026" / "01"
    folder.mkdir(parents=True, exist_ok=True)
    with get_database(app).session() as session:
        case_id = session.scalars(select(Case.id).order_by(Case.id)).first()
        for i in range(calls):
            number = f"+6681{i:07d}"
            session.add(Call(call_sid=f"CA{i:032x}", caller_number_enc=config.cipher.encrypt(number)))
        for i in range(recordings):
            sid = f"RE{i:032x}"
            path = folder / f"{sid}.wav.sealed"
            path.write_bytes(config.sealer.seal_bytes(wav))
            session.add(
                Recording(
                    recording_sid=sid,
                    call_sid="CA" + sid[2:],
                    case_id=case_id,
                    media_url=f"https://api.twilio.com/x/{sid}",
                    status="completed",
                    storage_status=StorageStatus.STORED,
                    stored_path=str(path),
                    size_bytes=len(wav),
                    sha256=hashlib.sha256(wav).hexdigest(),
                )
            )


def numbers(app: Flask) -> list[str]:
    with get_database(app).session() as session:
        calls = session.scalars(select(Call.caller_number_enc).where(Call.caller_number_enc.is_not(None)))
        cases = session.scalars(select(Case.callback_number_enc).where(Case.callback_number_enc.is_not(None)))
        return [t for t in [*calls, *cases] if t]


def stored_recordings(app: Flask) -> list[Path]:
    with get_database(app).session() as session:
        paths = session.scalars(select(Recording.stored_path).where(Recording.stored_path.is_not(None)))
        return [Path(p) for p in paths if p]


def assert_only_the_new_keys_needed(app: Flask, config: Config, new: NewKeys, before: list[str]) -> None:
    """Every number, spool file and sealed file opens with the new keys alone; no `.part` is left."""
    cipher, sealer = FieldCipher(new.data), RecordingCipher(new.recording)
    assert sorted(cipher.decrypt(t) for t in numbers(app)) == before
    assert stored_recordings(app)
    for path in sealed_files(config.data_dir):
        assert sealer.read_all(path) == tone_wav(), path
    for path in spool.files(config.spool_dir):
        assert cipher.decrypt(spool_entry(path)["caller_enc"]).startswith("+66")
    assert not list(config.data_dir.rglob("*.part")) and plain_audio(config.data_dir) == []
    keys.check_keys(get_database(app), cipher, sealer)  # the start would accept the new keys alone


def spool_entry(path: Path) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return entry


# ---- in-process: the spool and the files no row names --------------------------------------------------


def test_rotation_reseals_the_spool_and_every_sealed_file_under_the_data_dir(
    app: Flask, config: Config, world: World, instance: Instance
) -> None:
    kept = spool_message(app)
    # A download stored as its row was being written: on disk, sealed, named by no row.
    orphan = config.recordings_dir / "2026" / "02" / "REorphan.wav.sealed"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(config.sealer.seal_bytes(tone_wav()))
    # What a rotation killed mid-file left (its `.part`): the next one removes it.
    leftover = orphan.with_name(orphan.name + keys.ROTATING)
    leftover.write_bytes(b"half")
    before = sorted(config.cipher.decrypt(t) for t in numbers(app))

    new = NewKeys(config)
    result = instance(**new.rotating).test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "numbers: spool files: 1 re-encrypted, 0 already current" in result.output
    assert "other sealed files: 1 sealed anew, 5 already current" in result.output
    assert result.output.splitlines()[-1].endswith("0 failed")
    assert not leftover.exists()
    assert_only_the_new_keys_needed(app, config, new, before)

    # The spool replays under the new key alone: its call keeps the caller's number.
    alone = instance(**new.alone)
    assert telephony_jobs.replay_spool(get_database(alone), webhooks.telephony(alone)) == 1
    assert not kept.exists()
    with get_database(alone).session() as session:
        call = session.scalars(select(Call).order_by(Call.id.desc())).first()
        assert call is not None and call.caller_number_enc is not None
        assert FieldCipher(new.data).decrypt(call.caller_number_enc) == "+66812345678"


# ---- a rotation killed and run again -------------------------------------------------------------------


def rotate_process(
    config: Config, tmp_path: Path, settings: dict[str, str], **env: str
) -> subprocess.Popen[str]:
    """`flask --app app keys rotate` in its own process, on this test's database and data dir."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "TWILIO_"))}
    full.update(
        HOTLINE_INSTANCE_DIR=str(tmp_path / "elsewhere"),
        HOTLINE_DATA_DIR=str(config.data_dir),
        DATABASE_URL=config.database_url,
        HOTLINE_DATA_KEY=settings["data_key"],
        HOTLINE_RECORDING_KEY=settings["recording_key"],
        **env,
    )
    return subprocess.Popen(
        [str(BIN / "flask"), "--app", "app", "keys", "rotate"],
        cwd=ROOT,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when_stalled(proc: subprocess.Popen[str]) -> list[str]:
    """Read its progress until it says it stalled, then SIGKILL it; the lines it printed."""
    guard = threading.Timer(120, proc.kill)  # a run that never stalls fails below, not the whole suite
    guard.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("rotation stalled"):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        guard.cancel()
        proc.wait(timeout=30)
        proc.stdout.close() if proc.stdout else None
        proc.stderr.close() if proc.stderr else None
    assert proc.returncode == -signal.SIGKILL, lines
    return lines


def sealed_with(path: Path) -> bytes | None:
    with path.open("rb") as fh:
        header = read_header(fh.read(HEADER.size))
    return None if header is None else header.key_id


def count(paths: list[Path], test: Callable[[Path], bool]) -> int:
    return sum(1 for p in paths if test(p))


@pytest.mark.slow
@pytest.mark.parametrize("stall", ["numbers:1", "recordings:5"])
def test_a_rotation_killed_part_way_is_resumed_and_then_needs_only_the_new_keys(
    app: Flask, config: Config, world: World, tmp_path: Path, stall: str
) -> None:
    populate(app, config, calls=250, recordings=12)  # two batches of callers' numbers, 17 recordings
    spool_message(app)
    before = sorted(config.cipher.decrypt(t) for t in numbers(app))
    new = NewKeys(config)
    get_database(app).dispose()  # SQLite: the other process reads and writes the file as it is
    new_sealer, new_cipher = RecordingCipher(new.recording), FieldCipher(new.data)

    lines = kill_when_stalled(rotate_process(config, tmp_path, new.rotating, HOTLINE_TEST_ROTATE_STALL=stall))
    recordings = stored_recordings(app)
    resealed = count(recordings, lambda p: sealed_with(p) == new_sealer.current_id)
    current = sum(new_cipher.is_current(t) for t in numbers(app))
    if stall == "numbers:1":  # killed after the first batch was committed: half the numbers done
        assert lines[-2] == "numbers: calls.caller_number_enc: 200 re-encrypted, 0 already current"
        assert current == 200 and resealed == 0
    else:  # killed while the sixth recording's new file was half written
        assert current == len(before) and resealed == 5
        [part] = list(config.recordings_dir.rglob("*.part"))
        assert part.name.endswith(keys.ROTATING) and part.read_bytes().startswith(MAGIC)

    again = rotate_process(config, tmp_path, new.rotating)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, out + err
    last = out.splitlines()[-1]
    assert last.startswith("keys rotate: ") and last.endswith(", 0 failed"), out
    assert_only_the_new_keys_needed(app, config, new, before)
    assert len(stored_recordings(app)) == 17


# ---- a call's recording: never plain on disk, played by range after a rotation --------------------------

PASSWORD = "a long enough password"


def call_centre_agent(app: Flask) -> FlaskClient:
    """A signed-in agent of the central office (a draft case is the call centre's until it is routed)."""
    with get_database(app).session() as session:
        user = accounts.create_user(session, "agent", "สมหญิง รับสาย", PASSWORD)
        central = session.scalars(select(Office.id).where(Office.code == CENTRAL_OFFICE_CODE)).one()
        session.add(RoleAssignment(user_id=user.id, office_id=central, role=Role.AGENT))
        session.commit()
    client = app.test_client()
    assert login(client, "agent", PASSWORD).status_code == 302
    return client


def test_a_calls_recording_is_never_plain_on_disk_and_plays_by_range_after_rotation(
    app: Flask, config: Config, rig: Rig, caller: TwilioCaller, instance: Instance
) -> None:
    rec = rig.hosted(6.0)  # 96 KB: two sealed chunks
    walk(caller, *FULL_CALL, rec, "1")  # the message is sent: a draft case holds it
    assert completed(caller, rec) == 200
    hang_up(caller)
    assert rig.jobs().sweep_downloads() == 1
    with get_database(app).session() as session:
        row = session.scalars(select(Recording).where(Recording.recording_sid == rec.sid)).one()
        rec_id, case_id, stored = row.id, row.case_id, Path(str(row.stored_path))
    assert case_id is not None and stored.is_relative_to(config.data_dir)
    assert [p for p in config.data_dir.rglob("*") if p.is_file()]  # the walk below walks something
    assert plain_audio(config.data_dir) == [] and sealed_files(config.data_dir) == [stored]
    wav = generate_wav(6.0)

    new = NewKeys(config)
    result = instance(**new.rotating).test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert sealed_with(stored) == RecordingCipher(new.recording).current_id
    assert plain_audio(config.data_dir) == [] and not list(config.data_dir.rglob("*.part"))

    client = call_centre_agent(instance(**new.alone))  # the old keys are gone
    url = f"/console/recordings/{rec_id}/audio"
    whole = fetch(client, url)
    assert whole.status_code == 200 and whole.data == wav
    part = fetch(client, url, Range="bytes=70000-70999")  # past the first 64 KiB chunk: a seek
    assert part.status_code == 206 and part.data == wav[70000:71000]
    assert part.headers["Content-Range"] == f"bytes 70000-70999/{len(wav)}"
    tail = fetch(client, url, Range="bytes=-100")
    assert tail.status_code == 206 and tail.data == wav[-100:]
    assert fetch(client, url, Range=f"bytes={len(wav)}-").status_code == 416


# ---- the keys are parsed once ------------------------------------------------------------------------


def test_the_keys_are_parsed_once_for_the_app_its_checks_and_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: Counter[str] = Counter()
    for cls in (FieldCipher, RecordingCipher):
        original = cls.__init__

        def counting(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            built[type(self).__name__] += 1
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting)
    config = make_config(tmp_path)
    if config.is_sqlite:  # migrated with the offices, as the app fixture makes it
        shutil.copyfile(_migrated_with_offices(), Path(str(make_url(config.database_url).database)))
    assert built == {"FieldCipher": 1, "RecordingCipher": 1}  # from_env's check of each variable

    app = create_app(config)
    app.testing = True
    app_module._check_keys(app)  # as the entry point does
    assert app.test_cli_runner().invoke(args=["keys", "rotate"]).exit_code == 0
    assert app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    assert built == {"FieldCipher": 1, "RecordingCipher": 1}
    assert webhooks.telephony(app).cipher is config.cipher
    assert playback.sealer(app) is config.sealer
    get_database(app).dispose()
