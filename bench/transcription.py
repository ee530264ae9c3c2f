"""Benchmark: the project's transcriber pool against vosk-transcriber, on the same files and model, same run.

Measures, for a batch of synthetic Korean calls (espeak-ng; default 20 files of 30 s, as 8 kHz μ-law
telephone audio and as 16 kHz PCM):

- throughput (audio seconds per wall second) of TranscriberPool and of `vosk-transcriber --tasks 2`
  (the vosk package's own CLI), both timed from a cold start (model loading included), and the ratio;
- transcript parity: for 16 kHz files (no resampling on either side) our text must equal the peer's exactly;
  for 8 kHz files, which each side resamples its own way (soxr here, ffmpeg there), the word error rate
  between the two. Parity is checked against the peer run once per file in a fresh process, because Kaldi's
  MFCC dither draws from the process-wide C rand(): a batch run's words depend on what ran before (see
  alphacep/vosk-api#660). The pool restores the fresh-process rand() state before each job;
- peak resident memory of each transcriber process (VmHWM);
- hang-up-to-transcript latency for one 30 s message on a warm pool (target: at most half the audio + 1 s).

Bench-only dependencies: ffmpeg (vosk-transcriber resamples through an ffmpeg subprocess;
`apt-get install -y ffmpeg`) and espeak-ng. Run from the repository root:

    python -m bench.transcription [--files 20] [--seconds 30] [--processes 2] [--workdir DIR]

Thai goes through the other engine (Whisper): `python -m bench.transcription --engine whisper [...]` runs
bench/whisper_thai.py with the arguments that follow (its own --help lists them).
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Run as a file, this folder leads sys.path and this script's name would shadow the transcription package.
_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)

import numpy as np  # noqa: E402 (after the sys.path fix above)
import soundfile  # type: ignore[import-untyped]  # noqa: E402 (no type information shipped)
import soxr  # type: ignore[import-untyped]  # noqa: E402 (no py.typed marker)

from transcription.pool import TranscriberPool, TranscriptOutcome  # noqa: E402
from transcription.registry import ModelInfo, discover_models  # noqa: E402

# Things a caller to a school-safety line might say; espeak-ng's Korean is rough, the words need not be heard.
SENTENCES = [
    "안녕하세요 저는 중학교 이학년 학생 입니다",
    "학교 에서 친구 들이 저를 때렸어요",
    "선생님 께 말씀 드렸 는데 도와 주지 않았어요",
    "엄마 와 아빠 는 아직 모르세요",
    "어제 점심 시간 에 운동장 에서 일이 있었어요",
    "매일 돈 을 가져 오라고 해요",
    "무서워서 학교 에 가기 싫어요",
    "제 이름 은 말하지 않을게요",
    "사람 학생 친구 엄마 아빠 학교 집 물 밥 돈",
    "전화 번호 를 남기면 연락 주시나요",
    "오늘 집 에 가는 길 에 또 만났어요",
    "동생 도 같은 학교 에 다녀요",
    "휴대폰 으로 나쁜 말 을 보내요",
    "경찰 에 신고 해도 되나요",
    "도와 주세요 감사 합니다",
]


@dataclass
class Batch:
    label: str
    files: list[Path]
    seconds: float  # total audio


@dataclass
class Run:
    label: str
    wall_s: float  # from process start, model loading included
    load_s: float  # of which starting up and loading the model
    cpu_s: float  # user + system time of every process involved (ffmpeg included for the peer)
    audio_s: float
    texts: dict[str, str]
    peak_rss: dict[int, int]  # pid -> bytes

    @property
    def throughput(self) -> float:
        return self.audio_s / self.wall_s

    @property
    def warm_throughput(self) -> float:
        return self.audio_s / (self.wall_s - self.load_s)

    @property
    def cpu_efficiency(self) -> float:
        return self.audio_s / self.cpu_s


def cpu_time() -> float:
    """CPU seconds used by this process and by every descendant it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# -- corpus ---------------------------------------------------------------------------------------------


def synthesise(folder: Path, count: int, seconds: float, seed: int = 3) -> tuple[Batch, Batch]:
    """`count` calls of exactly `seconds` s, as 8 kHz μ-law WAV and as 16 kHz PCM WAV."""
    narrow, wide = folder / "8k", folder / "16k"
    narrow.mkdir(parents=True, exist_ok=True)
    wide.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for index in range(count):
        speech, rate = _speech(rng, seconds, folder / "espeak.wav")
        name = f"call-{index:02d}.wav"
        soundfile.write(narrow / name, soxr.resample(speech, rate, 8000), 8000, subtype="ULAW")
        soundfile.write(wide / name, soxr.resample(speech, rate, 16000), 16000, subtype="PCM_16")
    files = sorted(p.name for p in narrow.iterdir())
    return (
        Batch("8 kHz μ-law", [narrow / f for f in files], count * seconds),
        Batch("16 kHz PCM", [wide / f for f in files], count * seconds),
    )


def _speech(rng: random.Random, seconds: float, scratch: Path) -> tuple[np.ndarray, int]:
    parts: list[np.ndarray] = []
    total, rate = 0, 22050
    speed, pitch = rng.randint(110, 150), rng.randint(30, 70)
    while total < seconds * rate:
        text = ". ".join(rng.sample(SENTENCES, 4))
        subprocess.run(
            ["espeak-ng", "-v", "ko", "-s", str(speed), "-p", str(pitch), "-w", str(scratch), text],
            check=True,
        )
        part, rate = soundfile.read(scratch, dtype="float32")
        parts.extend([part, np.zeros(int(rate * rng.uniform(0.3, 1.2)), dtype=np.float32)])
        total += sum(len(p) for p in parts[-2:])
    return np.concatenate(parts)[: int(seconds * rate)], rate


# -- memory ---------------------------------------------------------------------------------------------


def vm_hwm(pid: int) -> int | None:
    """Peak resident set size of a live process, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakWatcher:
    """Samples VmHWM of some processes until stopped (VmHWM only grows, so the last sample is the peak)."""

    def __init__(self, pids: Callable[[], Sequence[int]]) -> None:
        self._pids = pids
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PeakWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def _sample(self) -> None:
        for pid in self._pids():
            peak = vm_hwm(pid)
            if peak is not None:
                self.peaks[pid] = max(peak, self.peaks.get(pid, 0))


# -- the two transcribers -------------------------------------------------------------------------------


def run_pool(models: dict[str, ModelInfo], batch: Batch, processes: int, *, reuse: bool = True) -> Run:
    """Cold start (children spawn and load the model), then the whole batch through `processes` threads."""
    cpu, started = cpu_time(), time.perf_counter()
    pool = TranscriberPool(
        models,
        size=processes,
        job_timeout_s=600,
        max_audio_s=3600,
        max_jobs_per_process=1000,
        reuse_recognizers=reuse,
    )
    with pool, PeakWatcher(pool.pids) as watcher, ThreadPoolExecutor(max_workers=processes) as executor:
        pool.wait_ready()
        loaded = time.perf_counter() - started
        outcomes = list(executor.map(lambda path: pool.transcribe(path, "ko"), batch.files))
        wall = time.perf_counter() - started
    cpu = cpu_time() - cpu  # the children were joined by close(): their time is counted
    bad = [
        (path.name, o.status, o.detail)
        for path, o in zip(batch.files, outcomes, strict=True)
        if o.status != "done"
    ]
    if bad:
        print(f"  pool: not done: {bad}", file=sys.stderr)
    texts = {path.name: o.text for path, o in zip(batch.files, outcomes, strict=True)}
    label = f"pool ({processes} processes{'' if reuse else ', new recognizer per job'})"
    return Run(label, wall, loaded, cpu, batch.seconds, texts, watcher.peaks)


def transcriber_command() -> str:
    script = Path(sys.executable).parent / "vosk-transcriber"
    return str(script) if script.exists() else "vosk-transcriber"


def run_peer(model: ModelInfo, batch: Batch, out: Path, tasks: int, load_s: float) -> Run:
    """`vosk-transcriber --tasks N` over the batch's folder, from process start to exit."""
    wall, cpu, peaks = _peer(model, batch.files[0].parent, out, tasks)
    texts = {path.name: read_peer_text(out / f"{path.stem}.txt") for path in batch.files}
    return Run(f"vosk-transcriber --tasks {tasks}", wall, load_s, cpu, batch.seconds, texts, peaks)


def peer_startup(model: ModelInfo, folder: Path) -> float:
    """Wall time vosk-transcriber needs to start, load the model and exit, measured on a 0.1 s file."""
    folder.mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / "blip.wav", np.zeros(1600, dtype=np.int16), 16000)
    return statistics.median(_peer(model, folder / "blip.wav", folder / f"out-{i}", 1)[0] for i in range(3))


def _peer(model: ModelInfo, source: Path, out: Path, tasks: int) -> tuple[float, float, dict[int, int]]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    command = [
        transcriber_command(),
        "--model", str(model.path),
        "--tasks", str(tasks),
        "--input", str(source),
        "--output", str(out if source.is_dir() else out / f"{source.stem}.txt"),
        "--output-type", "txt",
        "--log-level", "WARNING",  # its quietest: logging every partial result would only slow it down
    ]  # fmt: skip
    cpu, started = cpu_time(), time.perf_counter()
    with (out / "stderr.log").open("wb") as log:  # Kaldi's loading chatter; kept for a failed run
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        with PeakWatcher(lambda: [process.pid]) as watcher:
            code = process.wait()
    wall, cpu = time.perf_counter() - started, cpu_time() - cpu
    if code:
        raise SystemExit(f"vosk-transcriber failed with exit code {code}: see {out / 'stderr.log'}")
    return wall, cpu, watcher.peaks


def read_peer_text(path: Path) -> str:
    # vosk-transcriber writes each utterance's text on its own line; the pool joins them with spaces.
    return " ".join(path.read_text(encoding="utf-8").split())


def peer_fresh(model: ModelInfo, files: list[Path], out: Path, parallel: int) -> dict[str, str]:
    """vosk-transcriber once per file, each in a new process: the reference a batch run cannot give."""
    out.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> tuple[str, str]:
        target = out / f"{path.stem}.txt"
        subprocess.run(
            [transcriber_command(), "--model", str(model.path), "--input", str(path), "--output", str(target),
             "--log-level", "WARNING"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return path.name, read_peer_text(target)

    with ThreadPoolExecutor(max_workers=parallel) as executor:
        return dict(executor.map(one, files))


# -- comparison -----------------------------------------------------------------------------------------


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between two sequences (of words, or of characters for CER)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        previous, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref != hyp))
    return row[-1]


def wer(reference: dict[str, str], hypothesis: dict[str, str]) -> float:
    errors = sum(word_errors(reference[k].split(), hypothesis[k].split()) for k in reference)
    words = sum(len(reference[k].split()) for k in reference)
    return errors / max(words, 1)


def mb(size: int) -> str:
    return f"{size / 1_000_000:.0f} MB"


def report_run(run: Run) -> None:
    peaks = ", ".join(mb(peak) for _, peak in sorted(run.peak_rss.items())) or "n/a"
    print(
        f"  {run.label:<26} wall {run.wall_s:6.1f} s (load {run.load_s:4.1f})"
        f"  cold {run.throughput:5.2f}  warm {run.warm_throughput:5.2f} audio s/s"
        f"  cpu {run.cpu_s:6.1f} s ({run.cpu_efficiency:5.2f} audio s/cpu s)  peak RSS {peaks}"
    )


def report_ratios(label: str, runs: list[tuple[Run, Run]]) -> None:
    def median(measure: Callable[[Run], float]) -> float:
        return statistics.median(measure(ours) / measure(peer) for peer, ours in runs)

    print(
        f"  {label}: pool / vosk-transcriber, median of {len(runs)}:"
        f" cold {median(lambda r: r.throughput):.2f}x, warm {median(lambda r: r.warm_throughput):.2f}x,"
        f" per CPU second {median(lambda r: r.cpu_efficiency):.2f}x (target 1.2x)"
    )


# -- main -----------------------------------------------------------------------------------------------


def compare_batches(
    args: argparse.Namespace,
    model: ModelInfo,
    models: dict[str, ModelInfo],
    work: Path,
    startup: float,
    batches: list[Batch],
) -> dict[str, tuple[Run, Run]]:
    """vosk-transcriber and our pool on the same files, alternating who goes first."""
    results: dict[str, tuple[Run, Run]] = {}
    for batch in batches:
        print(f"\n{batch.label}: {len(batch.files)} files, {batch.seconds:g} s of audio")
        runs: list[tuple[Run, Run]] = []
        for attempt in range(args.repeat):
            # Alternate who goes first: the host's other load drifts during a run.
            order = ["peer", "pool"] if attempt % 2 == 0 else ["pool", "peer"]
            done: dict[str, Run] = {}
            for side in order:
                if side == "peer":
                    out = work / "peer" / batch.label.split()[0]
                    done[side] = run_peer(model, batch, out, args.processes, startup)
                else:
                    done[side] = run_pool(models, batch, args.processes)
                report_run(done[side])
            runs.append((done["peer"], done["pool"]))
        report_ratios(batch.label, runs)
        results[batch.label] = runs[0]
    return results


def parity(
    args: argparse.Namespace,
    model: ModelInfo,
    models: dict[str, ModelInfo],
    work: Path,
    narrow: Batch,
    wide: Batch,
    results: dict[str, tuple[Run, Run]],
) -> None:
    """Our texts against vosk-transcriber run once per file in a fresh process."""
    print("\nparity (vosk-transcriber run once per file in a fresh process as the reference)")
    fresh_wide = peer_fresh(model, wide.files, work / "fresh" / "16k", args.processes)
    peer_batch, ours = results[wide.label]
    exact = run_pool(models, wide, args.processes, reuse=False)
    report_run(exact)
    for run, note in (
        (ours, "reused recognizers, as in production"),
        (exact, "a new recognizer per job"),
    ):
        same = [name for name in fresh_wide if fresh_wide[name] == run.texts[name]]
        print(f"  16 kHz, {note}: same text as vosk-transcriber: {len(same)}/{len(fresh_wide)}")
        for name in sorted(set(fresh_wide) - set(same)):
            differ = word_errors(fresh_wide[name].split(), run.texts[name].split())
            print(f"    {name}: {differ} of {len(fresh_wide[name].split())} words differ")
    same_batch = [name for name in fresh_wide if fresh_wide[name] == peer_batch.texts[name]]
    print(
        f"  16 kHz: vosk-transcriber's own batch run equals its fresh runs for {len(same_batch)}/"
        f"{len(fresh_wide)} files (dither state shared by its threads);"
        f" WER between them {wer(fresh_wide, peer_batch.texts):.1%}: the noise floor of dither alone"
    )
    fresh_narrow = peer_fresh(model, narrow.files, work / "fresh" / "8k", args.processes)
    _, ours_narrow = results[narrow.label]
    print(f"  8 kHz: WER pool vs vosk-transcriber (fresh) = {wer(fresh_narrow, ours_narrow.texts):.1%}")
    print(f"  8 kHz: WER 8 kHz pool vs 16 kHz pool (cost of the phone line) = "
          f"{wer(ours.texts, ours_narrow.texts):.1%}")  # fmt: skip


def latency(models: dict[str, ModelInfo], args: argparse.Namespace, narrow: Batch) -> None:
    """Hang-up to transcript, one message at a time, on a cold and on warm transcribers."""
    print("\nlatency, hang-up to transcript, one message at a time (files this pool has not seen)")
    with TranscriberPool(
        models, size=args.processes, job_timeout_s=600, max_audio_s=3600, max_jobs_per_process=1000
    ) as pool:
        pool.wait_ready()
        first = pool.transcribe(narrow.files[0], "ko")
        report_latency("models loaded, first message of the child", first, args.seconds)
        with ThreadPoolExecutor(max_workers=args.processes) as executor:  # every child has worked before
            list(executor.map(lambda path: pool.transcribe(path, "ko"), narrow.files[1 : 1 + args.processes]))
        warm = [pool.transcribe(path, "ko") for path in narrow.files[-3:]]
        for outcome in warm:
            report_latency("warm worker", outcome, args.seconds)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["--engine", "whisper"]:
        from bench import whisper_thai

        return whisper_thai.main(argv[2:])
    if argv[:2] == ["--engine", "vosk"]:
        argv = argv[2:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=2, help="pool size and vosk-transcriber --tasks")
    parser.add_argument("--workdir", type=Path, help="keep the generated audio and outputs here")
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each side per batch")
    parser.add_argument("--no-parity", action="store_true", help="skip the fresh-process parity runs")
    args = parser.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        raise SystemExit("vosk-transcriber needs ffmpeg: apt-get install -y ffmpeg (bench-only dependency)")

    models = discover_models({})
    model = models["ko"]
    with tempfile.TemporaryDirectory(prefix="bench-transcription-") as scratch:
        work = args.workdir or Path(scratch)
        print(f"model {model.model_id} ({model.sample_rate} Hz) at {model.path}")
        print(f"synthesising {args.files} calls of {args.seconds:g} s with espeak-ng in {work} ...")
        narrow, wide = synthesise(work / "audio", args.files, args.seconds)

        startup = peer_startup(model, work / "blip")
        print(f"vosk-transcriber start-up + model load + exit: {startup:.1f} s (median of 3)")
        results = compare_batches(args, model, models, work, startup, [narrow, wide])
        if not args.no_parity:
            parity(args, model, models, work, narrow, wide, results)
        latency(models, args, narrow)
    return 0


def report_latency(label: str, outcome: TranscriptOutcome, seconds: float) -> None:
    target = seconds / 2 + 1
    taken = outcome.processing_ms / 1000
    print(
        f"  {label}: {outcome.audio_duration_s:.0f} s message in {taken:.2f} s"
        f" (target <= {target:g} s: {'ok' if taken <= target else 'OVER'})"
    )


if __name__ == "__main__":
    sys.exit(main())
