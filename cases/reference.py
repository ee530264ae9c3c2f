"""Case references: eight digits a caller can hear, write down and key back, with a check digit."""

from __future__ import annotations

import secrets

# Damm's quasigroup: the check digit catches every single wrong digit and every swap of neighbours.
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
LENGTH = 8


def damm_digit(digits: str) -> int:
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][int(ch)]
    return interim


def new_reference() -> str:
    """Seven random digits (not starting with 0, so nothing drops it) and a Damm check digit."""
    body = str(secrets.randbelow(9) + 1) + "".join(str(secrets.randbelow(10)) for _ in range(LENGTH - 2))
    return body + str(damm_digit(body))


def is_valid_reference(value: str) -> bool:
    return len(value) == LENGTH and value.isdigit() and damm_digit(value) == 0


def display_reference(value: str) -> str:
    """'12345678' -> '1234-5678' for screens and print."""
    return f"{value[:4]}-{value[4:]}"
