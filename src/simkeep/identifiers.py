"""Checks and normal forms for the identifiers of DOMAIN.md section 6.

The ICCID and IMSI checks are written to be cheap, because bulk imports run them on millions of rows; the
tests prove them equal to python-stdnum's on random input.
"""

from __future__ import annotations

import re

import phonenumbers

from simkeep.errors import InvalidInput

E164 = re.compile(r"^\+[1-9][0-9]{4,14}\Z")
_DIGITS = re.compile(r"^[0-9]+\Z")
# Sum of the digits of 2*d, for the doubled positions of the Luhn algorithm.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


class InvalidMsisdn(InvalidInput):
    """Not an E.164 phone number."""

    code = "INVALID_MSISDN"


class InvalidIccid(InvalidInput):
    """Not a valid SIM serial."""

    code = "INVALID_ICCID"


class InvalidImsi(InvalidInput):
    """Not a valid subscriber identity."""

    code = "INVALID_IMSI"


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (its last digit is the check digit)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _DOUBLED[d] if i & 1 else d
    return total % 10 == 0


def iccid_problem(iccid: str) -> str | None:
    """Why ``iccid`` is not a valid ICCID, or None if it is."""
    if not _DIGITS.match(iccid):
        return "an ICCID has digits only"
    if len(iccid) not in (19, 20):
        return "an ICCID has 19 or 20 digits"
    if not iccid.startswith("89"):
        return "an ICCID starts with 89 (telecommunications)"
    if not luhn_valid(iccid):
        return "the ICCID's check digit is wrong (Luhn)"
    return None


def imsi_problem(imsi: str) -> str | None:
    """Why ``imsi`` is not a valid IMSI (MCC 3 + MNC 2-3 + MSIN, at most 15 digits), or None if it is."""
    if not _DIGITS.match(imsi):
        return "an IMSI has digits only"
    if not 6 <= len(imsi) <= 15:
        return "an IMSI has 6 to 15 digits"
    return None


def normalise_iccid(value: str) -> str:
    """The ICCID without spaces or dashes; raises :class:`InvalidIccid`."""
    iccid = value.replace(" ", "").replace("-", "")
    problem = iccid_problem(iccid)
    if problem:
        raise InvalidIccid(problem)
    return iccid


def normalise_imsi(value: str) -> str:
    """The IMSI without spaces; raises :class:`InvalidImsi`."""
    imsi = value.strip().replace(" ", "")
    problem = imsi_problem(imsi)
    if problem:
        raise InvalidImsi(problem)
    return imsi


def msisdn_problem(msisdn: str) -> str | None:
    """Why ``msisdn`` is not a valid E.164 number, or None if it is."""
    if not E164.match(msisdn):
        return "a phone number is written in E.164, like +8613800138000"
    try:
        parsed = phonenumbers.parse(msisdn, None)
    except phonenumbers.NumberParseException:
        return "not a phone number"
    if not phonenumbers.is_valid_number(parsed):
        return "not a valid phone number for its country"
    return None


def normalise_msisdn(value: str) -> str:
    """The number in E.164 (spaces and dashes removed); raises :class:`InvalidMsisdn`."""
    msisdn = value.strip().replace(" ", "").replace("-", "")
    problem = msisdn_problem(msisdn)
    if problem:
        raise InvalidMsisdn(problem)
    return msisdn
