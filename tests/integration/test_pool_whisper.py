"""Several Whisper jobs at once in one transcriber process: right texts, one copy of the weights, retries.

One module-scoped pool of 2 jobs in 1 process runs the shipped Whisper base on the real Thai clips.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from transcription.pool import TranscriberPool, TranscriptOutcome
from transcription.registry import ModelInfo, discover_models
from transcription.whisper_models import shipped_whisper_base

CLIPS = Path(__file__).resolve().parents[2] / "tests" / "data" / "thai"
# Words Whisper base gets in each clip (as in test_whisper.py); the long file is both clips, three times.
SPOKEN = {"cv": ("เรื่อง", "เวลา"), "typhoon": ("เธอ", "อีกอัน"), "long": ("เวลา", "อีกอัน")}


@pytest.fixture(scope="module")
def whisper_base(whisper_data_dir: Path) -> ModelInfo:
    info = shipped_whisper_base(whisper_data_dir, "th")
    assert info is not None, "the Whisper base wheels are a default dependency"
    return info


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cv, typhoon = CLIPS / "common_voice_th_25686161.wav", CLIPS / "typhoon_cv_test.wav"
    pause = np.zeros(8000)
    pieces = [piece for _ in range(3) for path in (cv, typhoon) for piece in (sf.read(path)[0], pause)]
    long = tmp_path_factory.mktemp("thai") / "long.wav"  # ~40 s: a job still running when it is disturbed
    sf.write(long, np.concatenate(pieces), 16000)
    return {"cv": cv, "typhoon": typhoon, "long": long}


@pytest.fixture(scope="module")
def pool(whisper_base: ModelInfo) -> Iterator[TranscriberPool]:
    with TranscriberPool(
        {"th": whisper_base},
        size=2,
        jobs_per_process=2,
        job_timeout_s=120,
        max_audio_s=120,
        max_jobs_per_process=1000,
    ) as pool:
        pool.wait_ready()
        yield pool


def start(
    pool: TranscriberPool, source: Path, **options: float
) -> tuple[threading.Thread, list[TranscriptOutcome]]:
    outcomes: list[TranscriptOutcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(pool.transcribe(source, "th", **options)))
    thread.start()
    return thread, outcomes


def wait_running(pool: TranscriberPool, jobs: int) -> None:
    deadline = time.monotonic() + 30
    while pool.running() < jobs:
        assert time.monotonic() < deadline, f"{jobs} jobs never ran at once"
        time.sleep(0.01)


def says(outcome: TranscriptOutcome, clip: str) -> bool:
    text = outcome.text.replace(" ", "")
    return outcome.status == "done" and all(word in text for word in SPOKEN[clip])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_two_jobs_run_at_once_in_one_process_with_the_right_texts(
    pool: TranscriberPool, clips: dict[str, Path]
) -> None:
    assert pool.processes == 1
    [pid] = pool.pids()
    runs = {clip: start(pool, clips[clip]) for clip in ("long", "typhoon")}
    wait_running(pool, 2)
    assert pool.busy_pids() == [pid]  # both jobs on the one child
    for thread, _ in runs.values():
        thread.join(timeout=180)
    for clip, (_, [outcome]) in runs.items():
        assert says(outcome, clip), (clip, outcome)
        assert outcome.attempts == 1
    assert pool.pids() == [pid]
    # One copy of the weights for both jobs: a single-job process holds ~440 MB, two of them ~880 MB.
    assert rss_mb(pid) < 800


def test_a_killed_child_with_two_jobs_in_flight_retries_both(
    pool: TranscriberPool, clips: dict[str, Path]
) -> None:
    [victim] = pool.pids()
    runs = {clip: start(pool, clips[clip]) for clip in ("long", "cv")}
    wait_running(pool, 2)
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    for thread, _ in runs.values():
        thread.join(timeout=180)
    for clip, (_, [outcome]) in runs.items():
        assert says(outcome, clip), (clip, outcome)
        assert outcome.attempts == 2  # each ran once more, on the one replacement
    [replacement] = pool.pids()
    assert replacement != victim
    assert says(pool.transcribe(clips["typhoon"], "th"), "typhoon")


def test_a_hung_job_is_retried_then_timeout_and_its_neighbour_still_finishes(
    pool: TranscriberPool, clips: dict[str, Path]
) -> None:
    [before] = pool.pids()
    neighbour, neighbour_outcome = start(pool, clips["long"])
    wait_running(pool, 1)
    hung, hung_outcome = start(pool, clips["long"], timeout_s=0.3)  # never finishes in time
    for thread in (hung, neighbour):
        thread.join(timeout=240)
    [timed_out], [finished] = hung_outcome, neighbour_outcome
    assert (timed_out.status, timed_out.reason, timed_out.attempts) == ("timeout", "timeout", 2)
    assert timed_out.text == ""
    # Killed with the hung job's child (and its retry's): rerun each time, its own retry never spent.
    assert says(finished, "long"), finished
    assert finished.attempts in (2, 3)
    assert pool.processes == 1 and pool.pids() != [before]
    assert says(pool.transcribe(clips["cv"], "th"), "cv")


def test_processes_are_jobs_over_jobs_per_process_for_whisper_and_one_per_job_with_vosk(
    whisper_base: ModelInfo,
) -> None:
    def new_pool(models: dict[str, ModelInfo], size: int) -> TranscriberPool:
        return TranscriberPool(
            models, size=size, jobs_per_process=2, job_timeout_s=60, max_audio_s=60, max_jobs_per_process=10
        )

    with new_pool({"th": whisper_base}, 3) as whisper_only:
        assert whisper_only.processes == len(whisper_only.pids()) == 2  # 2 jobs + 1 job
    models = {**discover_models({}), "th": whisper_base}  # Korean through Vosk: one job a process
    with new_pool(models, 2) as mixed:
        assert mixed.processes == len(mixed.pids()) == 2
