"""Identity document numbers: the Chinese resident ID (居民身份证) and the passport's machine-readable zone.

Checks are pure functions that either return the parsed document or raise :class:`InvalidDocument` with a
``reason`` the caller can act upon (DOMAIN.md section 6). Error messages and details never repeat the
number itself, so they can be logged.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from simkeep.errors import InvalidInput

DOCUMENT_TYPES = ("cn_ric", "passport")

_RIC_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
_PASSPORT_NUMBER = re.compile(r"[A-Z0-9]{5,9}")
_MRZ_LINE = re.compile(r"[A-Z0-9<]{44}")
# ISO 7064 MOD 11-2 weights of the 17 leading digits of a resident ID number (GB 11643-1999).
_RIC_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_OLDEST_BIRTH_YEAR = 1900


class DocumentProblem(enum.StrEnum):
    """Why a document number or MRZ was refused; stable values used in error details."""

    FORMAT = "FORMAT"
    CHECKSUM = "CHECKSUM"
    REGION = "REGION"
    BIRTH_DATE = "BIRTH_DATE"
    MRZ_CHECK_DIGIT = "MRZ_CHECK_DIGIT"
    MRZ_FORMAT = "MRZ_FORMAT"
    EXPIRED = "EXPIRED"


class InvalidDocument(InvalidInput):
    """A document number or machine-readable zone that fails its checks; ``reason`` says which."""

    code = "DOCUMENT_INVALID"

    def __init__(self, message: str, *, reason: DocumentProblem, **details: Any) -> None:
        super().__init__(message, reason=reason.value, **details)
        self.reason = reason


# --- Chinese resident identity card number --------------------------------------------------------------


@dataclass(frozen=True)
class CnRic:
    """A checked resident ID number and what it encodes."""

    number: str
    birth_date: date
    region_code: str
    region_name: str | None
    sex: Literal["F", "M"]


def ric_check_character(first17: str) -> str:
    """The MOD 11-2 check character ("0"-"9" or "X") for the 17 leading digits of a resident ID."""
    total = sum(int(d) * w for d, w in zip(first17, _RIC_WEIGHTS, strict=True))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def ric_checksum_ok(number: str) -> bool:
    """Whether an 18-character candidate has the shape of a resident ID and a correct check character."""
    return bool(_RIC_SHAPE.fullmatch(number)) and ric_check_character(number[:17]) == number[17]


def _compact_ric(number: str) -> str:
    return "".join(number.split()).replace("-", "").upper()


def check_cn_ric(number: str) -> CnRic:
    """Check a resident ID number (spaces and a lower-case x tolerated) and return what it encodes."""
    from stdnum import exceptions as stdnum_errors
    from stdnum.cn import ric

    compact = _compact_ric(number)
    if not _RIC_SHAPE.fullmatch(compact):
        raise InvalidDocument(
            "A resident ID number has 18 characters: 17 digits and a digit or X.",
            reason=DocumentProblem.FORMAT,
        )
    try:
        ric.validate(compact)
    except stdnum_errors.InvalidChecksum:
        raise InvalidDocument(
            "The resident ID number's check character is wrong; please check it for typing errors.",
            reason=DocumentProblem.CHECKSUM,
        ) from None
    except stdnum_errors.InvalidComponent:
        # stdnum checks the birth date, then the region; find out which of the two it refused.
        try:
            ric.get_birth_date(compact)
        except stdnum_errors.InvalidComponent:
            raise _bad_birth_date() from None
        raise InvalidDocument(
            "The resident ID number's region code is not a known region.",
            reason=DocumentProblem.REGION,
        ) from None
    except (stdnum_errors.InvalidLength, stdnum_errors.InvalidFormat):
        raise InvalidDocument(
            "A resident ID number has 18 characters: 17 digits and a digit or X.",
            reason=DocumentProblem.FORMAT,
        ) from None
    born: date = ric.get_birth_date(compact)
    if born > date.today() or born.year < _OLDEST_BIRTH_YEAR:  # noqa: DTZ011 - a calendar date, no time
        raise _bad_birth_date()
    place: dict[str, str] = ric.get_birth_place(compact)
    name = "".join(place.get(key, "") for key in ("province", "prefecture", "county")) or None
    return CnRic(
        number=compact,
        birth_date=born,
        region_code=compact[:6],
        region_name=name,
        sex="M" if int(compact[16]) % 2 else "F",
    )


def _bad_birth_date() -> InvalidDocument:
    return InvalidDocument(
        "The birth date inside the resident ID number is not a possible date.",
        reason=DocumentProblem.BIRTH_DATE,
    )


# --- Passport machine-readable zone (ICAO 9303 TD3) ------------------------------------------------------


@dataclass(frozen=True)
class PassportMrz:
    """The checked fields of a passport's machine-readable zone."""

    document_number: str
    country: str
    nationality: str
    surname: str
    given_names: str
    birth_date: date
    expiry_date: date
    sex: Literal["F", "M", "X"]


# The check digits of a TD3 MRZ as the mrz package reports them, in the order they are checked.
_MRZ_CHECKS = (
    ("document number hash", "document_number"),
    ("birth date hash", "birth_date"),
    ("expiry date hash", "expiry_date"),
    ("optional data hash", "optional_data"),
    ("final hash", "composite"),
)


def mrz_check_digit(field: str) -> str:
    """The ICAO 9303 check digit of a field: weights 7, 3, 1; A-Z count 10-35 and the filler < counts 0."""
    total = 0
    for i, char in enumerate(field):
        if char.isdigit():
            value = int(char)
        elif "A" <= char <= "Z":
            value = ord(char) - ord("A") + 10
        elif char == "<":
            value = 0
        else:
            raise InvalidDocument(f"{char!r} cannot appear in an MRZ.", reason=DocumentProblem.MRZ_FORMAT)
        total += value * (7, 3, 1)[i % 3]
    return str(total % 10)


def split_mrz_lines(mrz: str) -> tuple[str, str]:
    """The two 44-character lines of a TD3 MRZ given as two lines or as 88 characters."""
    lines = [line.strip() for line in mrz.strip().splitlines() if line.strip()]
    if len(lines) == 1 and len(lines[0]) == 88:
        lines = [lines[0][:44], lines[0][44:]]
    if len(lines) != 2 or not all(_MRZ_LINE.fullmatch(line) for line in lines):
        raise InvalidDocument(
            "A passport's machine-readable zone has two lines of 44 characters (A-Z, 0-9 and <).",
            reason=DocumentProblem.MRZ_FORMAT,
        )
    return lines[0], lines[1]


def _mrz_date(text: str, *, today: date, past: bool) -> date:
    yy, mm, dd = int(text[:2]), int(text[2:4]), int(text[4:6])
    year = 2000 + yy
    candidate = date(year, mm, dd)
    # Two-digit years: a birth date is never in the future; an expiry date is at most a few decades ahead.
    if (past and candidate > today) or (not past and year > today.year + 50):
        candidate = date(year - 100, mm, dd)
    return candidate


def check_passport_mrz(mrz: str, *, today: date | None = None) -> PassportMrz:
    """Check a passport's TD3 machine-readable zone: its format, all five check digits and its expiry."""
    today = today or date.today()  # noqa: DTZ011 - a calendar date, no time
    passport = parse_passport_mrz(mrz, today=today)
    if passport.expiry_date < today:
        raise InvalidDocument("The passport has expired.", reason=DocumentProblem.EXPIRED)
    return passport


def parse_passport_mrz(mrz: str, *, today: date | None = None) -> PassportMrz:
    """Parse a TD3 machine-readable zone, checking its format and check digits but not its expiry."""
    from mrz.checker.td3 import TD3CodeChecker

    today = today or date.today()  # noqa: DTZ011 - a calendar date, no time
    line1, line2 = split_mrz_lines(mrz)
    sex_char = line2[20]
    # ICAO 9303 (8th edition) allows X for an unspecified sex; the mrz package knows only <, so give it that.
    checked_line2 = line2[:20] + ("<" if sex_char == "X" else sex_char) + line2[21:]
    try:
        checker = TD3CodeChecker(f"{line1}\n{checked_line2}")
    except (TypeError, ValueError):  # the mrz package's FieldError and its kinds are ValueErrors
        raise InvalidDocument(
            "The passport's machine-readable zone is not well formed.", reason=DocumentProblem.MRZ_FORMAT
        ) from None
    results = dict(checker.report.fields)
    failed = [name for key, name in _MRZ_CHECKS if results.get(key) is False]
    if failed:
        raise InvalidDocument(
            "A check digit in the passport's machine-readable zone does not match; "
            "the zone was mistyped or misread, or the document is not genuine.",
            reason=DocumentProblem.MRZ_CHECK_DIGIT,
            check=failed[0],
            checks=failed,
        )
    if not checker:
        bad = sorted(key for key, ok in results.items() if ok is False)
        raise InvalidDocument(
            "The passport's machine-readable zone is not well formed.",
            reason=DocumentProblem.MRZ_FORMAT,
            fields=bad,
        )
    fields = checker.fields()
    try:
        birth = _mrz_date(line2[13:19], today=today, past=True)
        expiry = _mrz_date(line2[21:27], today=today, past=False)
    except ValueError:
        raise InvalidDocument(
            "A date in the passport's machine-readable zone is not a possible date.",
            reason=DocumentProblem.MRZ_FORMAT,
        ) from None
    return PassportMrz(
        document_number=line2[0:9].rstrip("<"),
        country=str(fields.country),
        nationality=str(fields.nationality),
        surname=str(fields.surname).strip(),
        given_names=" ".join(str(fields.name).split()),
        birth_date=birth,
        expiry_date=expiry,
        sex="F" if sex_char == "F" else "M" if sex_char == "M" else "X",
    )


def _mrz_field(value: str, length: int, what: str) -> str:
    cleaned = re.sub(r"[\s\-']+", "<", value.strip().upper())
    if not re.fullmatch(r"[A-Z0-9<]*", cleaned) or len(cleaned) > length:
        raise InvalidDocument(
            f"The {what} cannot be written in an MRZ field of {length} characters.",
            reason=DocumentProblem.MRZ_FORMAT,
        )
    return cleaned.ljust(length, "<")


def make_td3_mrz(
    *,
    document_number: str,
    country: str,
    surname: str,
    given_names: str,
    birth_date: date,
    expiry_date: date,
    sex: Literal["F", "M", "X"],
    nationality: str | None = None,
    optional_data: str = "",
    document_type: str = "P",
) -> str:
    """A valid two-line TD3 MRZ for the given fields (names already transliterated to A-Z)."""
    name = f"{_mrz_field(surname, 39, 'surname').rstrip('<')}<<{_mrz_field(given_names, 39, 'given names')}"
    line1 = (
        _mrz_field(document_type, 2, "document type")
        + _mrz_field(country, 3, "country")
        + name[:39].ljust(39, "<")
    )
    number = _mrz_field(document_number, 9, "document number")
    born = birth_date.strftime("%y%m%d")
    expires = expiry_date.strftime("%y%m%d")
    optional = _mrz_field(optional_data, 14, "optional data")
    optional_check = "<" if optional == "<" * 14 else mrz_check_digit(optional)
    upper = number + mrz_check_digit(number)
    middle = born + mrz_check_digit(born)
    lower = expires + mrz_check_digit(expires) + optional + optional_check
    line2 = (
        upper
        + _mrz_field(nationality or country, 3, "nationality")
        + middle
        + ("<" if sex == "X" else sex)
        + lower
    )
    line2 += mrz_check_digit(upper + middle + lower)
    return f"{line1}\n{line2}"


# --- Either document -------------------------------------------------------------------------------------


def normalise_document_number(document_type: str, number: str) -> str:
    """The canonical form of a document number: a checked resident ID, or an upper-case passport number."""
    if document_type == "cn_ric":
        return check_cn_ric(number).number
    if document_type == "passport":
        compact = "".join(number.split()).upper()
        if not _PASSPORT_NUMBER.fullmatch(compact):
            raise InvalidDocument(
                "A passport number has 5 to 9 letters and digits.", reason=DocumentProblem.FORMAT
            )
        return compact
    raise InvalidDocument(
        f"Unknown document type; expected one of {', '.join(DOCUMENT_TYPES)}.",
        reason=DocumentProblem.FORMAT,
        document_type=document_type,
    )


def birth_date_of(document_type: str, number: str) -> date | None:
    """The birth date a document number encodes (resident IDs do, passport numbers do not)."""
    if document_type == "cn_ric":
        return check_cn_ric(number).birth_date
    normalise_document_number(document_type, number)
    return None
