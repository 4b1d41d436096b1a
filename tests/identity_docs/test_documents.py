"""Resident ID numbers and passport machine-readable zones: what passes and why the rest is refused."""

from __future__ import annotations

from datetime import date

import pytest
from mrz.checker.td3 import TD3CodeChecker
from mrz.generator.td3 import TD3CodeGenerator
from stdnum.cn import ric

from simkeep.errors import InvalidInput, http_status_for
from simkeep.identity.documents import (
    CnRic,
    DocumentProblem,
    InvalidDocument,
    birth_date_of,
    check_cn_ric,
    check_passport_mrz,
    make_td3_mrz,
    mrz_check_digit,
    normalise_document_number,
    parse_passport_mrz,
    ric_check_character,
)

TODAY = date(2025, 6, 1)
# The specimen of ICAO Doc 9303 part 4 (expired in 2012).
ICAO_SPECIMEN = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"


def with_check(first17: str) -> str:
    """``first17`` completed with its check character, computed by stdnum (independently of simkeep)."""
    return first17 + ric.calc_check_digit(first17 + "0")


def valid_mrz(**overrides: object) -> str:
    """A valid TD3 MRZ for a made-up holder, with fields overridden."""
    fields: dict[str, object] = {
        "document_number": "E12345678",
        "country": "CHN",
        "surname": "Zhang",
        "given_names": "San Feng",
        "birth_date": date(1990, 1, 2),
        "expiry_date": date(2031, 5, 6),
        "sex": "M",
        "optional_data": "G1234567",
    }
    fields.update(overrides)
    return make_td3_mrz(**fields)  # type: ignore[arg-type]


def reason_of(exc: pytest.ExceptionInfo[InvalidDocument]) -> DocumentProblem:
    """The reason an InvalidDocument gives, checked to be in its details too."""
    assert exc.value.details["reason"] == exc.value.reason.value
    return exc.value.reason


class TestCheckCnRic:
    """check_cn_ric: shape, check character, region and birth date of a resident ID number."""

    def test_valid_number_is_parsed(self) -> None:
        """A valid number yields its birth date, region and sex (an even 17th digit is a woman)."""
        parsed = check_cn_ric("11010519491231002X")
        assert parsed == CnRic(
            number="11010519491231002X",
            birth_date=date(1949, 12, 31),
            region_code="110105",
            region_name="北京市朝阳区",
            sex="F",
        )

    def test_odd_sequence_digit_is_a_man(self) -> None:
        """An odd 17th digit marks a man."""
        number = with_check("44030519851120123")
        parsed = check_cn_ric(number)
        assert (parsed.sex, parsed.birth_date, parsed.region_code) == ("M", date(1985, 11, 20), "440305")

    def test_spaces_and_lower_case_x_are_tolerated(self) -> None:
        """Spaces anywhere and a lower-case x are normalised away."""
        assert check_cn_ric(" 110105 19491231 002x ").number == "11010519491231002X"

    def test_bad_check_character_is_checksum(self) -> None:
        """A wrong last character is reported as a checksum error."""
        with pytest.raises(InvalidDocument) as exc:
            check_cn_ric("110105194912310021")
        assert reason_of(exc) is DocumentProblem.CHECKSUM

    def test_swapped_digits_are_checksum(self) -> None:
        """Two adjacent digits typed the wrong way round are caught by the check character."""
        with pytest.raises(InvalidDocument) as exc:
            check_cn_ric("11010519492131002X")
        assert reason_of(exc) is DocumentProblem.CHECKSUM

    def test_unknown_region_is_region(self) -> None:
        """A correct check character on an unknown region code (990000) is a region error."""
        number = with_check("99000019900101001")
        with pytest.raises(InvalidDocument) as exc:
            check_cn_ric(number)
        assert reason_of(exc) is DocumentProblem.REGION

    def test_impossible_birth_date_is_birth_date(self) -> None:
        """A correct check character on 30 February is a birth-date error."""
        number = with_check("11010519900230001")
        with pytest.raises(InvalidDocument) as exc:
            check_cn_ric(number)
        assert reason_of(exc) is DocumentProblem.BIRTH_DATE

    def test_future_birth_date_is_birth_date(self) -> None:
        """A birth date in the future is refused though it is a real calendar date."""
        number = with_check("11010520990101001")
        with pytest.raises(InvalidDocument) as exc:
            check_cn_ric(number)
        assert reason_of(exc) is DocumentProblem.BIRTH_DATE

    @pytest.mark.parametrize(
        "number",
        ["1101051949123100", "11010519491231002X1", "11010519491231002A", "1101051949123100XX", "", "身份证"],
    )
    def test_wrong_shape_is_format(self, number: str) -> None:
        """Wrong lengths and letters other than a final X are format errors."""
        with pytest.raises(InvalidDocument) as exc:
            check_cn_ric(number)
        assert reason_of(exc) is DocumentProblem.FORMAT

    def test_error_is_an_invalid_input_without_the_number(self) -> None:
        """The error maps to 422, code DOCUMENT_INVALID, and never repeats the number (it may be logged)."""
        with pytest.raises(InvalidDocument) as exc:
            check_cn_ric("110105194912310021")
        assert isinstance(exc.value, InvalidInput)
        assert exc.value.code == "DOCUMENT_INVALID"
        assert http_status_for(exc.value) == 422
        assert "110105" not in exc.value.message
        assert "110105" not in str(exc.value.details)

    def test_own_check_character_agrees_with_stdnum(self) -> None:
        """simkeep's MOD 11-2 computation gives stdnum's answer, X included."""
        for first17 in ["11010519491231002", "44030519851120123", "99000019900101001", "11010519900230001"]:
            assert first17 + ric_check_character(first17) == with_check(first17)


class TestCheckPassportMrz:
    """check_passport_mrz and parse_passport_mrz: format, the five check digits, expiry."""

    def test_icao_specimen_is_parsed(self) -> None:
        """The ICAO specimen parses, names split at << and fillers turned into spaces."""
        parsed = check_passport_mrz(ICAO_SPECIMEN, today=date(2010, 1, 1))
        assert parsed.document_number == "L898902C3"
        assert (parsed.country, parsed.nationality, parsed.sex) == ("UTO", "UTO", "F")
        assert (parsed.surname, parsed.given_names) == ("ERIKSSON", "ANNA MARIA")
        assert (parsed.birth_date, parsed.expiry_date) == (date(1974, 8, 12), date(2012, 4, 15))

    def test_made_mrz_is_parsed(self) -> None:
        """An MRZ built by make_td3_mrz parses back to its fields."""
        parsed = check_passport_mrz(valid_mrz(), today=TODAY)
        assert parsed.document_number == "E12345678"
        assert (parsed.surname, parsed.given_names) == ("ZHANG", "SAN FENG")
        assert (parsed.birth_date, parsed.expiry_date) == (date(1990, 1, 2), date(2031, 5, 6))

    def test_one_line_of_88_characters_is_accepted(self) -> None:
        """The zone may come as one line of 88 characters, as some scanners send it."""
        parsed = check_passport_mrz(valid_mrz().replace("\n", ""), today=TODAY)
        assert parsed.document_number == "E12345678"

    def test_birth_year_in_the_last_century(self) -> None:
        """A two-digit birth year that would lie in the future belongs to the 1900s."""
        parsed = check_passport_mrz(valid_mrz(birth_date=date(1950, 3, 4)), today=TODAY)
        assert parsed.birth_date == date(1950, 3, 4)

    def test_unspecified_sex_is_x(self) -> None:
        """A filler in the sex field reads as X (unspecified)."""
        assert check_passport_mrz(valid_mrz(sex="X"), today=TODAY).sex == "X"

    @pytest.mark.parametrize(
        ("position", "check"),
        [
            (9, "document_number"),
            (19, "birth_date"),
            (27, "expiry_date"),
            (42, "optional_data"),
            (43, "composite"),
        ],
    )
    def test_each_corrupted_check_digit_is_found(self, position: int, check: str) -> None:
        """Changing any one check digit fails that check first (the composite may fail with it)."""
        line1, line2 = valid_mrz().splitlines()
        wrong = str((int(line2[position]) + 1) % 10)
        corrupted = f"{line1}\n{line2[:position]}{wrong}{line2[position + 1 :]}"
        with pytest.raises(InvalidDocument) as exc:
            check_passport_mrz(corrupted, today=TODAY)
        assert reason_of(exc) is DocumentProblem.MRZ_CHECK_DIGIT
        assert exc.value.details["check"] == check

    def test_corrupted_field_fails_its_check_digit(self) -> None:
        """A misread birth date (not its check digit) fails the birth-date check."""
        line1, line2 = valid_mrz().splitlines()
        corrupted = f"{line1}\n{line2[:13]}8{line2[14:]}"
        with pytest.raises(InvalidDocument) as exc:
            check_passport_mrz(corrupted, today=TODAY)
        assert exc.value.details["check"] == "birth_date"
        assert "composite" in exc.value.details["checks"]

    def test_expired_passport_is_refused(self) -> None:
        """A passport past its expiry date is refused as expired."""
        with pytest.raises(InvalidDocument) as exc:
            check_passport_mrz(valid_mrz(expiry_date=date(2025, 5, 31)), today=TODAY)
        assert reason_of(exc) is DocumentProblem.EXPIRED

    def test_expiring_today_is_still_valid(self) -> None:
        """A passport is valid through its expiry date."""
        assert check_passport_mrz(valid_mrz(expiry_date=TODAY), today=TODAY).expiry_date == TODAY

    def test_parse_does_not_check_expiry(self) -> None:
        """parse_passport_mrz reads an expired passport, leaving the expiry decision to the caller."""
        parsed = parse_passport_mrz(ICAO_SPECIMEN, today=TODAY)
        assert parsed.expiry_date == date(2012, 4, 15)

    @pytest.mark.parametrize(
        "mrz",
        [
            pytest.param(ICAO_SPECIMEN.splitlines()[0], id="one-line"),
            pytest.param(ICAO_SPECIMEN[:-1], id="43-characters"),
            pytest.param(ICAO_SPECIMEN.lower(), id="lower-case"),
            pytest.param(ICAO_SPECIMEN.replace("ANNA", "AN A"), id="space"),
            pytest.param(ICAO_SPECIMEN + "\n" + "<" * 44, id="three-lines"),
            pytest.param("", id="empty"),
        ],
    )
    def test_malformed_lines_are_mrz_format(self, mrz: str) -> None:
        """Anything but two lines of 44 characters from A-Z, 0-9 and < is a format error."""
        with pytest.raises(InvalidDocument) as exc:
            check_passport_mrz(mrz, today=date(2010, 1, 1))
        assert reason_of(exc) is DocumentProblem.MRZ_FORMAT

    def test_visa_document_type_is_mrz_format(self) -> None:
        """A TD3 whose document type is not P (a visa's V) is not a passport."""
        with pytest.raises(InvalidDocument) as exc:
            check_passport_mrz("V" + ICAO_SPECIMEN[1:], today=date(2010, 1, 1))
        assert reason_of(exc) is DocumentProblem.MRZ_FORMAT

    def test_unknown_country_is_mrz_format(self) -> None:
        """An issuing state that is no ICAO code is a format error."""
        with pytest.raises(InvalidDocument) as exc:
            check_passport_mrz(valid_mrz(country="QQQ", nationality="CHN"), today=TODAY)
        assert reason_of(exc) is DocumentProblem.MRZ_FORMAT

    def test_impossible_birth_date_is_mrz_format(self) -> None:
        """A birth date of 31 February with a matching check digit is a format error."""
        line1, line2 = valid_mrz().splitlines()
        body = line2[:13] + "900231" + mrz_check_digit("900231") + line2[20:43]
        upper, middle, lower = body[0:10], body[13:20], body[21:43]
        mrz = f"{line1}\n{body}{mrz_check_digit(upper + middle + lower)}"
        with pytest.raises(InvalidDocument) as exc:
            check_passport_mrz(mrz, today=TODAY)
        assert reason_of(exc) is DocumentProblem.MRZ_FORMAT


class TestMakeTd3Mrz:
    """make_td3_mrz: a valid zone from fields, check digits computed with the 7-3-1 weights."""

    def test_mrz_package_accepts_every_check_digit(self) -> None:
        """The mrz package finds all five check digits of a made zone correct."""
        checker = TD3CodeChecker(valid_mrz())
        assert bool(checker)
        assert all(ok for _, ok in checker.report.fields)

    def test_same_as_mrz_package_generator(self) -> None:
        """With personal data present, the zone is character for character what the mrz package makes."""
        expected = TD3CodeGenerator(
            "P", "CHN", "Zhang", "San Feng", "E12345678", "CHN", "900102", "M", "310506", "G1234567"
        )
        assert valid_mrz() == str(expected)

    def test_empty_optional_data_has_filler_check_digit(self) -> None:
        """Without personal data the optional-data check digit is a filler, and the zone still checks out."""
        mrz = valid_mrz(optional_data="")
        assert mrz.splitlines()[1][28:43] == "<" * 15
        assert bool(TD3CodeChecker(mrz))

    def test_icao_check_digit_examples(self) -> None:
        """Check digits agree with ICAO's worked examples."""
        assert mrz_check_digit("L898902C3") == "6"
        assert mrz_check_digit("740812") == "2"
        assert mrz_check_digit("ZE184226B<<<<<") == "1"

    def test_name_outside_a_z_is_refused(self) -> None:
        """Names must already be transliterated to A-Z; anything else is a format error."""
        with pytest.raises(InvalidDocument) as exc:
            valid_mrz(surname="Zhāng")
        assert reason_of(exc) is DocumentProblem.MRZ_FORMAT


class TestNormaliseDocumentNumber:
    """normalise_document_number: the canonical form of a typed document number."""

    def test_cn_ric_is_checked_and_compacted(self) -> None:
        """A resident ID loses its spaces and gains an upper-case X."""
        assert normalise_document_number("cn_ric", "110105 19491231 002x") == "11010519491231002X"

    def test_invalid_cn_ric_is_refused(self) -> None:
        """A resident ID with a wrong check character is refused."""
        with pytest.raises(InvalidDocument) as exc:
            normalise_document_number("cn_ric", "110105194912310021")
        assert reason_of(exc) is DocumentProblem.CHECKSUM

    def test_passport_is_upper_cased(self) -> None:
        """A passport number loses its spaces and is upper-cased."""
        assert normalise_document_number("passport", " e1234 5678 ") == "E12345678"

    @pytest.mark.parametrize("number", ["E123", "E123456789", "E1234-567", "护照12345", ""])
    def test_bad_passport_number_is_format(self, number: str) -> None:
        """A passport number outside 5-9 letters and digits is a format error."""
        with pytest.raises(InvalidDocument) as exc:
            normalise_document_number("passport", number)
        assert reason_of(exc) is DocumentProblem.FORMAT

    def test_unknown_document_type_is_refused(self) -> None:
        """Only cn_ric and passport are known."""
        with pytest.raises(InvalidDocument) as exc:
            normalise_document_number("driving_licence", "12345")
        assert exc.value.details["document_type"] == "driving_licence"


class TestBirthDateOf:
    """birth_date_of: the birth date a document number encodes."""

    def test_cn_ric_encodes_birth_date(self) -> None:
        """A resident ID carries the birth date in digits 7-14."""
        assert birth_date_of("cn_ric", "11010519491231002X") == date(1949, 12, 31)

    def test_passport_number_encodes_none(self) -> None:
        """A passport number says nothing about the birth date."""
        assert birth_date_of("passport", "E12345678") is None

    def test_invalid_number_is_refused(self) -> None:
        """An invalid number is refused rather than yielding a date."""
        with pytest.raises(InvalidDocument):
            birth_date_of("cn_ric", "110105194912310021")
