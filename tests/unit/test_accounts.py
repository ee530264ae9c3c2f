"""cases.accounts hashes passwords as werkzeug does: old hashes verify, and werkzeug reads the new ones."""

from __future__ import annotations

import re

from werkzeug.security import check_password_hash, generate_password_hash

from cases.accounts import hash_password, password_matches


def test_a_werkzeug_hash_verifies() -> None:
    made = generate_password_hash("correct horse battery", method="scrypt")
    assert password_matches(made, "correct horse battery")
    assert not password_matches(made, "correct horse battery!")


def test_werkzeug_verifies_our_hash_and_the_format_is_its_own() -> None:
    ours = hash_password("a new password 1")
    assert re.fullmatch(r"scrypt:32768:8:1\$[A-Za-z0-9]{16}\$[0-9a-f]{128}", ours)
    assert check_password_hash(ours, "a new password 1")
    assert not check_password_hash(ours, "a new password 2")
    assert hash_password("a new password 1") != ours  # a fresh salt each time


def test_a_pbkdf2_hash_verifies_and_garbage_does_not() -> None:
    made = generate_password_hash("pbkdf2 password", method="pbkdf2:sha256:1000")
    assert password_matches(made, "pbkdf2 password")
    assert not password_matches(made, "other")
    assert not password_matches("not-a-hash", "x")
    assert not password_matches("scrypt:x:y:z$salt$00", "x")
