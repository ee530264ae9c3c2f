"""What callers key or say, case references, and how personal data is masked and encrypted."""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Iterator

import geothai
import pytest
from cryptography.fernet import Fernet

from cases.reference import LENGTH, damm_digit, display_reference, is_valid_reference, new_reference
from infra.crypto import DataKeyError, FieldCipher, mask_phone
from infra.logs import PhoneMaskFilter
from telephony.validators import (
    DIGIT_VALIDATORS,
    SPEECH_VALIDATORS,
    case_reference,
    province_by_code,
    province_by_speech,
    province_hints,
    speak_digits,
    thai_phone,
)

PROVINCES = geothai.provinces()


# ---- provinces ------------------------------------------------------------------------------------


def test_there_are_77_provinces_with_two_digit_codes() -> None:
    codes = [p.code for p in PROVINCES]
    assert len(codes) == len(set(codes)) == 77
    assert all(len(c) == 2 and c.isdigit() for c in codes)
    assert {"10", "50", "96"} <= set(codes)


@pytest.mark.parametrize("province", PROVINCES, ids=lambda p: p.code)
def test_every_province_code_is_accepted(province: geothai.Province) -> None:
    accepted = province_by_code(province.code)
    assert accepted is not None
    assert accepted.value == province.code
    assert accepted.spoken == {"th": province.name_th, "en": province.name_en}


def test_well_known_codes() -> None:
    bangkok, chiang_mai = province_by_code("10"), province_by_code("50")
    assert bangkok is not None and bangkok.spoken["en"] == "Bangkok"
    assert chiang_mai is not None and chiang_mai.spoken["th"] == "เชียงใหม่"


@pytest.mark.parametrize(
    "digits", ["00", "99", "1", "abc", "", "100", "010", "1a", "28", "59", "97", " 10", "#"]
)
def test_codes_that_are_not_provinces_are_refused(digits: str) -> None:
    assert province_by_code(digits) is None


@pytest.mark.parametrize("province", PROVINCES, ids=lambda p: p.code)
def test_every_province_name_is_understood_in_thai_english_and_a_sentence(province: geothai.Province) -> None:
    for said in (
        province.name_th,
        province.name_en,
        province.name_en.upper(),
        f"จังหวัด{province.name_th}",
        f"เกิดเหตุที่จังหวัด{province.name_th}ค่ะ",
        f"ที่ {province.name_th} ครับ",
    ):
        accepted = province_by_speech(said)
        assert accepted is not None, said
        assert accepted.value == province.code, said


@pytest.mark.parametrize(
    ("said", "code"),
    [
        pytest.param("จังหวัดเชียงใหม่", "50", id="with-province-word"),
        # "เลย" is a word as well as a province: the longer name decides.
        pytest.param("เกิดที่เชียงใหม่เลยค่ะ", "50", id="sentence-with-loei-particle"),
        pytest.param("กรุงเทพ", "10", id="bangkok-short"),
        pytest.param("กทม", "10", id="bangkok-abbreviation"),
        pytest.param("Chiang Mai", "50", id="english"),
        pytest.param("in Chiang Mai please", "50", id="english-sentence"),
        # "nan" (Nan) runs across "in Ang": the longer name decides.
        pytest.param("it was in Ang Thong", "15", id="english-sentence-with-nan-inside"),
        pytest.param("Nakhon Nayok", "26", id="english-two-words"),
    ],
)
def test_province_speech_examples(said: str, code: str) -> None:
    accepted = province_by_speech(said)
    assert accepted is not None
    assert accepted.value == code


@pytest.mark.parametrize("said", ["", "   ", "ไม่ทราบค่ะ", "hello", "ab"])
def test_speech_without_a_province_is_refused(said: str) -> None:
    assert province_by_speech(said) is None


def test_province_hints_are_the_77_thai_names() -> None:
    hints = province_hints().split(",")
    assert sorted(hints) == sorted(p.name_th for p in PROVINCES)


def test_validator_tables_name_the_functions() -> None:
    assert dict(DIGIT_VALIDATORS) == {
        "province": province_by_code,
        "thai_phone": thai_phone,
        "reference": case_reference,
    }
    assert dict(SPEECH_VALIDATORS) == {"province": province_by_speech}


# ---- Thai phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "e164"),
    [
        ("0612345678", "+66612345678"),
        ("0812345678", "+66812345678"),
        ("0912345678", "+66912345678"),
        ("021266565", "+6621266565"),  # Bangkok fixed line: the hotline itself
        ("053123456", "+6653123456"),  # Chiang Mai fixed line
    ],
)
def test_thai_numbers_are_accepted_as_e164(digits: str, e164: str) -> None:
    accepted = thai_phone(digits)
    assert accepted is not None
    assert accepted.value == e164
    assert accepted.spoken == {"th": speak_digits(digits, "th"), "en": speak_digits(digits, "en")}


@pytest.mark.parametrize(
    "digits",
    [
        pytest.param("081234567", id="mobile-too-short"),
        pytest.param("08123456789", id="mobile-too-long"),
        pytest.param("02126656", id="fixed-too-short"),
        pytest.param("0212345678", id="fixed-too-long"),
        pytest.param("14155552671", id="us-number"),
        pytest.param("66812345678", id="country-code-keyed"),
        pytest.param("0012345678", id="international-prefix"),
        pytest.param("1300", id="short-code"),
        pytest.param("191", id="emergency"),
        pytest.param("", id="empty"),
        pytest.param("081234567#", id="with-pound"),
        pytest.param("08-1234-5678", id="with-dashes"),
    ],
)
def test_numbers_that_are_not_thai_are_refused(digits: str) -> None:
    assert thai_phone(digits) is None


def test_speak_digits_in_thai_and_english() -> None:
    assert speak_digits("0812", "th") == "ศูนย์ แปด หนึ่ง สอง"
    assert speak_digits("0123456789", "th") == "ศูนย์ หนึ่ง สอง สาม สี่ ห้า หก เจ็ด แปด เก้า"
    assert speak_digits("0123456789", "en") == "zero one two three four five six seven eight nine"
    assert speak_digits("12-34", "en") == "one two three four"
    assert speak_digits("", "th") == ""


# ---- case references ------------------------------------------------------------------------------


def references() -> Iterator[str]:
    """Valid references: a known one and a reproducible sample across the space."""
    yield "5724000" + str(damm_digit("5724000"))
    rng = random.Random(20250303)
    for _ in range(300):
        body = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(LENGTH - 2))
        yield body + str(damm_digit(body))


def test_damm_known_answer() -> None:
    # The worked example of Damm's algorithm: 572 gets the check digit 4.
    assert damm_digit("572") == 4
    assert damm_digit("5724") == 0


def test_new_references_are_valid_and_readable() -> None:
    drawn = {new_reference() for _ in range(500)}
    assert len(drawn) > 490
    for ref in drawn:
        assert len(ref) == LENGTH == 8
        assert ref.isdigit()
        assert ref[0] != "0"
        assert is_valid_reference(ref)


def test_every_single_digit_error_is_detected() -> None:
    checked = 0
    for ref in references():
        assert is_valid_reference(ref)
        for i, digit in enumerate(ref):
            for other in "0123456789":
                if other != digit:
                    assert not is_valid_reference(ref[:i] + other + ref[i + 1 :]), (ref, i, other)
                    checked += 1
    assert checked == 301 * 8 * 9


def test_every_adjacent_swap_is_detected() -> None:
    checked = 0
    for ref in references():
        for i in range(LENGTH - 1):
            if ref[i] != ref[i + 1]:
                swapped = ref[:i] + ref[i + 1] + ref[i] + ref[i + 2 :]
                assert not is_valid_reference(swapped), (ref, i)
                checked += 1
    assert checked > 301 * 6


@pytest.mark.parametrize("value", ["", "1234567", "123456789", "1234-567", "abcdefgh", "4073618x"])
def test_malformed_references_are_not_valid(value: str) -> None:
    assert not is_valid_reference(value)


def test_case_reference_validator_accepts_a_reference_and_reads_it_back_digit_by_digit() -> None:
    accepted = case_reference("40736181")
    assert accepted is not None
    assert accepted.value == "40736181"
    assert accepted.spoken == {
        "th": "สี่ ศูนย์ เจ็ด สาม หก หนึ่ง แปด หนึ่ง",
        "en": "four zero seven three six one eight one",
    }


@pytest.mark.parametrize(
    "value", ["40736182", "04736181", "4073618", "407361810", "", "4073618๑", "40736181#"]
)
def test_case_reference_validator_refuses_what_the_check_digit_or_length_rules_out(value: str) -> None:
    assert case_reference(value) is None


def test_display_reference() -> None:
    assert display_reference("40736181") == "4073-6181"


# ---- masking and encryption -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+66812345678", "+66 8x xxx x678"),
        ("+66612345678", "+66 6x xxx x678"),
        ("+6621266565", "+66 2x xx x565"),
        (None, None),
        ("", None),
    ],
)
def test_mask_phone_shapes(number: str | None, masked: str | None) -> None:
    assert mask_phone(number) == masked


@pytest.mark.parametrize("number", ["+66812345678", "+6621266565", "+14155552671", "+447700900123"])
def test_mask_phone_keeps_only_country_first_and_last_three_digits(number: str) -> None:
    masked = mask_phone(number)
    assert masked is not None
    country, national = masked.split(" ", 1)
    assert number.startswith(country)
    shown = [c for c in national if c.isdigit()]
    assert "".join(shown) == number[len(country)] + number[-3:]
    assert national.count("x") == len(number) - len(country) - 4


def test_mask_phone_of_something_that_is_not_a_number() -> None:
    assert mask_phone("garbage123") == "xxxxxxx123"


def key() -> str:
    return Fernet.generate_key().decode("ascii")


def test_field_cipher_round_trip() -> None:
    cipher = FieldCipher(key())
    token = cipher.encrypt("+66812345678")
    assert "812345678" not in token
    assert token != cipher.encrypt("+66812345678")  # a fresh IV every time
    assert cipher.decrypt(token) == "+66812345678"
    assert cipher.decrypt(cipher.encrypt("เบอร์ ๐๘")) == "เบอร์ ๐๘"


def test_field_cipher_wrong_key_is_a_data_key_error() -> None:
    token = FieldCipher(key()).encrypt("+66812345678")
    with pytest.raises(DataKeyError, match="cannot be decrypted"):
        FieldCipher(key()).decrypt(token)
    with pytest.raises(DataKeyError, match="cannot be decrypted"):
        FieldCipher(key()).decrypt("not-a-token")


@pytest.mark.parametrize("bad", ["", "short", "x" * 44])
def test_field_cipher_refuses_a_bad_key(bad: str) -> None:
    with pytest.raises(DataKeyError, match="HOTLINE_DATA_KEY"):
        FieldCipher(bad)


def test_lookup_hash_is_stable_per_key() -> None:
    k = key()
    assert FieldCipher(k).lookup_hash("+66812345678") == FieldCipher(k).lookup_hash("+66812345678")
    assert FieldCipher(k).lookup_hash("+66812345678") != FieldCipher(k).lookup_hash("+66812345679")
    assert FieldCipher(k).lookup_hash("+66812345678") != FieldCipher(key()).lookup_hash("+66812345678")


# ---- logs -----------------------------------------------------------------------------------------


@pytest.fixture
def log_output() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PhoneMaskFilter())
    logger = logging.getLogger("tests.unit.phone_mask")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("message", "args", "expected"),
    [
        ("caller %s hung up", ("+66812345678",), "caller [phone …678] hung up"),
        ("callback on 0812345678", (), "callback on [phone …678]"),
        ("callback on 081-234-5678.", (), "callback on [phone …678]."),
        ("office 02 126 6565 closed", (), "office [phone …565] closed"),
        ("from %s to %s", ("+66812345678", "+6621266565"), "from [phone …678] to [phone …565]"),
    ],
)
def test_phone_numbers_are_masked_in_log_messages(
    log_output: tuple[logging.Logger, io.StringIO], message: str, args: tuple[str, ...], expected: str
) -> None:
    logger, stream = log_output
    logger.info(message, *args)
    line = stream.getvalue().strip()
    assert line == expected
    assert "812345678" not in line


@pytest.mark.parametrize(
    "message",
    [
        "case 40736181 opened",  # a reference is not a phone number
        "call CA0812345678abcdef0812345678abcdef at seq 12",
        "took 1234 ms",
    ],
)
def test_other_numbers_are_left_alone(log_output: tuple[logging.Logger, io.StringIO], message: str) -> None:
    logger, stream = log_output
    logger.info(message)
    assert stream.getvalue().strip() == message


def test_mask_filter_through_caplog(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(PhoneMaskFilter())
    with caplog.at_level(logging.WARNING, logger="tests.unit.caplog"):
        logging.getLogger("tests.unit.caplog").warning("bad signature from %s", "+66812345678")
    assert caplog.messages == ["bad signature from [phone …678]"]
    assert "812345678" not in caplog.text
