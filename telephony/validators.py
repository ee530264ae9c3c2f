"""What a caller keys or says, checked and turned into a value plus how to read it back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

import geothai
import phonenumbers
from geothai._normalize import normalize

from cases.reference import LENGTH, is_valid_reference

THAI_DIGITS = ("ศูนย์", "หนึ่ง", "สอง", "สาม", "สี่", "ห้า", "หก", "เจ็ด", "แปด", "เก้า")
EN_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
REFERENCE_LENGTH = LENGTH  # the keys a caller gives for a case reference


@dataclass(frozen=True)
class Accepted:
    value: str
    spoken: Mapping[str, str]  # language -> how to read the value back


def speak_digits(digits: str, language: str) -> str:
    """Digit by digit, as words, so no text-to-speech voice reads '1234' as a quantity."""
    words = THAI_DIGITS if language == "th" else EN_DIGITS
    return " ".join(words[int(d)] for d in digits if d.isdigit())


def province_by_code(digits: str) -> Accepted | None:
    if len(digits) != 2 or not digits.isdigit():
        return None
    province = geothai.province(digits)
    if province is None:
        return None
    return Accepted(province.code, {"th": province.name_th, "en": province.name_en})


@cache
def _province_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for p in geothai.provinces():
        names[normalize(p.name_th)] = p.code
        names[normalize(p.name_en)] = p.code
    names[normalize("กทม")] = "10"
    names[normalize("กรุงเทพ")] = "10"
    return names


def province_by_speech(text: str) -> Accepted | None:
    """Match a speech result to one province by its Thai or English name."""
    key = normalize(text)
    if not key:
        return None
    code = _province_names().get(key)
    if code is None:
        # Speech often wraps the name ("จังหวัดเชียงใหม่ค่ะ"): accept exactly one name inside it. Short
        # names are also words ("เลย" in "เชียงใหม่เลยค่ะ"): when names of several provinces are found,
        # the longest one alone decides.
        found = [(len(name), c) for name, c in _province_names().items() if len(name) >= 3 and name in key]
        longest = max((n for n, _ in found), default=0)
        codes = {c for n, c in found if n == longest}
        code = codes.pop() if len(codes) == 1 else None
    return province_by_code(code) if code else None


def province_hints() -> str:
    """The 77 Thai province names, as Twilio speech hints."""
    return ",".join(p.name_th for p in geothai.provinces())


def thai_phone(digits: str) -> Accepted | None:
    """A Thai mobile or fixed-line number keyed nationally (0812345678) -> E.164."""
    if not digits.isdigit() or not 9 <= len(digits) <= 10 or not digits.startswith("0"):
        return None
    try:
        parsed = phonenumbers.parse(digits, "TH")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number_for_region(parsed, "TH"):
        return None
    kind = phonenumbers.number_type(parsed)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return Accepted(str(e164), {"th": speak_digits(digits, "th"), "en": speak_digits(digits, "en")})


def case_reference(digits: str) -> Accepted | None:
    """A case reference keyed back by a caller: 8 digits whose Damm check digit holds.

    The check catches every single wrong digit and every swap of neighbours before the database is asked.
    """
    if not digits.isascii() or not is_valid_reference(digits):  # "๑" is a digit to str.isdigit()
        return None
    return Accepted(digits, {"th": speak_digits(digits, "th"), "en": speak_digits(digits, "en")})


DIGIT_VALIDATORS: Mapping[str, Callable[[str], Accepted | None]] = {
    "province": province_by_code,
    "thai_phone": thai_phone,
    "reference": case_reference,
}
SPEECH_VALIDATORS: Mapping[str, Callable[[str], Accepted | None]] = {
    "province": province_by_speech,
}
