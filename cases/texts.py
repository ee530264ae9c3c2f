"""Messages the domain shows to people: marked for the catalogue where written, translated at the edge.

`cases/` imports no translation library: a refusal carries a `Text` (the English msgid and its
parameters); the console looks the msgid up in its catalogue (console/i18n.py text()). `pybabel extract`
finds every `N_("...")` in cases/ and console/ (babel.cfg), so the catalogue is built from the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def N_(message: str) -> str:
    """Mark a message for the catalogue where it is defined; the edge translates it where it is shown."""
    return message


@dataclass(frozen=True)
class Text:
    """A message id and its %-parameters; a parameter that is itself a Text is translated first."""

    msgid: str
    params: dict[str, Any] = field(default_factory=dict)

    def english(self) -> str:
        """The message as written (logs, the shell, tests): the parameters filled in, untranslated."""
        values = {k: v.english() if isinstance(v, Text) else v for k, v in self.params.items()}
        return self.msgid % values if values else self.msgid

    def __str__(self) -> str:
        return self.english()


class Refusal(Exception):
    """Something a person asked for is refused; `text` says why, translated at the edge (console.i18n).

    `message` is a msgid marked with N_() where it is raised; `params` fill its %(name)s places (a
    Text among them is translated too). str(exc) is the English, for logs and the shell.
    """

    def __init__(self, message: str, **params: Any) -> None:
        self.text = Text(message, params)
        super().__init__(self.text.english())


def text(message: str, **params: Any) -> Text:
    """A marked message with parameters: text(N_("Only %(role)s ..."), role=Text(N_("a head"))).

    Call it with N_() around the literal so that extraction sees the msgid.
    """
    return Text(message, params)
