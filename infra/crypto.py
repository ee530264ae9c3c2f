"""Encryption of personal fields at rest, keyed hashes for look-ups, and masking for display."""

from __future__ import annotations

import hashlib
import hmac

import phonenumbers
from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class DataKeyError(ValueError):
    """The data key is missing or cannot decrypt a stored value."""


class FieldCipher:
    """Encrypts reporter phone numbers (and other personal fields) with the service's data key.

    HOTLINE_DATA_KEY is one Fernet key, or several comma-separated while keys are rotated
    (MultiFernet): the first encrypts, every one decrypts, `rotate` re-encrypts with the first.
    """

    def __init__(self, key: str) -> None:
        if not key or not key.strip():
            raise DataKeyError("HOTLINE_DATA_KEY is empty: personal data cannot be stored")
        parts = [part.strip() for part in key.split(",")]
        fernets = []
        for position, part in enumerate(parts, start=1):
            try:
                fernets.append(Fernet(part.encode("ascii")))
            except (ValueError, UnicodeEncodeError) as exc:
                where = f"HOTLINE_DATA_KEY (key {position})" if len(parts) > 1 else "HOTLINE_DATA_KEY"
                raise DataKeyError(f"{where} is not a Fernet key (32 url-safe base64 bytes)") from exc
        self._current = fernets[0]
        self._fernet = MultiFernet(fernets)
        # Look-up hashes (short-lived: follow-up tries within the hour, staff phone codes) follow the
        # current key; a rotation starts those counts afresh.
        self._hash_key = hashlib.sha256(b"lookup:" + parts[0].encode("ascii")).digest()
        # Search hashes of a number's last digits are kept with cases for as long as the number: one key
        # per configured key, so rows hashed under a key not yet rotated away are still found.
        self._digits_keys = [hashlib.sha256(b"digits:" + part.encode("ascii")).digest() for part in parts]

    def encrypt(self, value: str) -> str:
        return self._current.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise DataKeyError("a stored value cannot be decrypted with HOTLINE_DATA_KEY") from exc

    def is_current(self, token: str) -> bool:
        """True when the first (current) key decrypts `token`: rotation has nothing left to do for it."""
        try:
            self._current.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True

    def rotate(self, token: str) -> str:
        """The same value encrypted with the current key; DataKeyError if no configured key opens it."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise DataKeyError("a stored value cannot be decrypted with HOTLINE_DATA_KEY") from exc

    def lookup_hash(self, value: str) -> str:
        """A keyed hash to find records by a personal value without storing it in the clear."""
        return hmac.new(self._hash_key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def digits_hash(self, digits: str) -> str:
        """The keyed hash of a number's last digits under the current key (what is stored)."""
        return hmac.new(self._digits_keys[0], digits.encode("ascii"), hashlib.sha256).hexdigest()

    def digits_hashes(self, digits: str) -> list[str]:
        """The hashes of `digits` under every configured key (what a search looks for)."""
        return [hmac.new(k, digits.encode("ascii"), hashlib.sha256).hexdigest() for k in self._digits_keys]


def mask_phone(e164: str | None) -> str | None:
    """Mask a phone number for display: '+66812345678' -> '+66 8x xxx x678'."""
    if not e164:
        return None
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return "x" * max(len(e164) - 3, 0) + e164[-3:]
    national = str(parsed.national_number)
    if len(national) < 5:
        return f"+{parsed.country_code} " + "x" * len(national)
    body = national[0] + "x" * (len(national) - 4) + national[-3:]
    # Group like the national format (2, then threes, then 4) so it reads naturally.
    end = len(body) - 4
    groups = [body[:2]] + [body[i : min(i + 3, end)] for i in range(2, end, 3)] + [body[-4:]]
    return f"+{parsed.country_code} " + " ".join(g for g in groups if g)
