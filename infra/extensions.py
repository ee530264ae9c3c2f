"""The app's shared objects (app.extensions), each put and reached through one typed accessor, not a string.

Each owner declares its object beside its type, e.g. `infra.db.database = Shared[Database]("hotline.db")`;
the app installs it once (`database.install(app, db)`), and the code reaches it as `database(current_app)`.
Nothing here imports Flask: any object with an `extensions` dict will do.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar, cast

T = TypeVar("T")


class HasExtensions(Protocol):
    extensions: dict[str, Any]


class Shared(Generic[T]):
    """One named object shared by the app's parts: `install(app, value)`, then `accessor(app)`."""

    def __init__(self, key: str, default: T | None = None) -> None:
        self.key = key
        self.default = default

    def install(self, app: HasExtensions, value: T) -> T:
        app.extensions[self.key] = value
        return value

    def __call__(self, app: HasExtensions) -> T:
        if self.default is not None:
            return cast(T, app.extensions.get(self.key, self.default))
        return cast(T, app.extensions[self.key])
