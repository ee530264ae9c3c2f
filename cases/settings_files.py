"""The operator's YAML settings files (callbacks, holidays, retention): one loader, one kind of error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from infra.config import ConfigError


class SettingsFileError(ConfigError):
    """A settings file is wrong; the message names the file and the field."""

    def __init__(self, path: Path | str, field_name: str | None, problem: str) -> None:
        where = f"{path}: {field_name}" if field_name else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.field = field_name
        self.problem = problem


# libyaml's parser where installed (PyYAML wheels ship it): 10x faster than the pure-Python one, same results.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[misc,valid-type]
    """YAML without two YAML 1.1 surprises: dates stay text and an unquoted 16:30 is not 990."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789")
)


def load_yaml(path: Path, error: type[SettingsFileError]) -> Any:
    """The file's YAML; `error` (naming the file) when it cannot be read or parsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(path, None, f"cannot be read: {exc}") from exc
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise error(path, None, f"is not valid YAML: {exc}") from exc
