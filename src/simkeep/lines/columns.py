"""Column-wise checks of a chunk of migration rows: the lines import's fast path for plainly good rows.

Checking a row field by field in Python (:func:`simkeep.lines.importer.check_line`) costs about twenty
microseconds, most of it in calls, slicing and small objects, not in the checks. Here each rule is applied to
a whole column at once: a compiled pattern mapped over the column, a set of the few distinct values (dates,
region codes), or arithmetic over the column's bytes in NumPy (check characters, Luhn sums, times). A row
that passes every rule is one that ``check_line`` accepts, and its values are the ones ``check_line`` gives;
any other row (anything unusual: a bad value, spaces to strip, a lower-case ``x``, a rarer timestamp form) is
left to ``check_line``, which judges it and explains the problem. The tests hold both ways to the same
verdicts and values on random input.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from datetime import date
from functools import lru_cache
from itertools import repeat
from operator import itemgetter
from typing import Any, cast

import numpy as np

from simkeep.sims.columns import Codes, Mask, all_matching, char_codes, digits_ok, each, iccid_ok, where_good
from simkeep.sims.importer import SIM_KINDS

_PRINTABLE_MAX = {"ref": 64, "name": 200, "plan": 32}
_RIC = re.compile(r"[0-9]{17}[0-9X]")
_PASSPORT = re.compile(r"[A-Z0-9]{5,9}")
_EMAIL_OR_NONE = re.compile(r"(?:[^@\s]+@[^@\s]+\.[^@\s]+)?")
_EMAIL_MAX = 254
_LANGUAGES = {"": "zh-CN", "zh-CN": "zh-CN", "en": "en"}
#: int(number[:17], 13) mod 11 (stdnum's check character) as a weighted sum: 13 = 2 (mod 11).
_RIC_WEIGHTS = np.array([pow(13, 16 - i, 11) for i in range(17)], dtype=np.int64)
_ZERO = ord("0")


def _printable(values: Sequence[str], longest: int) -> Mask:
    """Non-empty, at most ``longest`` characters, printable: :func:`check_line`'s rule for free text."""
    n = len(values)
    if n and min(map(len, values)) > 0 and max(map(len, values)) <= longest and "".join(values).isprintable():
        return np.ones(n, dtype=np.bool_)  # the usual case, found without a step per row
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
    printable = np.fromiter(map(str.isprintable, values), dtype=np.bool_, count=n)
    return (lengths > 0) & (lengths <= longest) & printable


# --- identity documents ------------------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def _birth_date_ok(digits: str) -> bool:
    try:
        date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    return True


def _zeros_unless(values: Sequence[str], keep: Mask, width: int) -> list[str]:
    return [v if k else "0" * width for v, k in zip(values, keep.tolist(), strict=True)]


def _ric_ok(numbers: Sequence[str], place_known: Callable[[str, int], bool]) -> Mask:
    """CN resident IDs already in compact form that :func:`~simkeep.lines.importer.ric_problem` accepts."""
    n = len(numbers)
    ok: Mask = np.fromiter(map(len, numbers), dtype=np.int64, count=n) == 18
    codes = char_codes(numbers if ok.all() else _zeros_unless(numbers, ok, 18), 18)
    if codes is None:  # a character beyond ASCII: the pattern first
        ok = all_matching(_RIC, numbers)
        codes = char_codes(_zeros_unless(numbers, ok, 18), 18)
        if codes is None:  # pragma: no cover - the pattern admits ASCII digits only
            return np.zeros(n, dtype=np.bool_)
    digits = codes - _ZERO
    ok &= ((digits[:, :17] >= 0) & (digits[:, :17] <= 9)).all(axis=1)
    ok &= ((digits[:, 17] >= 0) & (digits[:, 17] <= 9)) | (codes[:, 17] == ord("X"))
    checksum = (1 - 2 * (digits[:, :17] @ _RIC_WEIGHTS)) % 11
    ok &= codes[:, 17] == np.where(checksum == 10, ord("X"), checksum + _ZERO)
    # the birth date, and the region with the birth year, checked once per distinct value
    birth = np.where(ok, _number(codes, 6, 8), 19700101)
    bad = [b for b in np.unique(birth).tolist() if not _birth_date_ok(f"{b:08d}")]
    place = np.where(ok, _number(codes, 0, 10), 0)
    bad_places = [p for p in np.unique(place[ok]).tolist() if not place_known(f"{p // 10000:06d}", p % 10000)]
    if bad:
        ok &= ~np.isin(birth, bad)
    if bad_places:
        ok &= ~np.isin(place, bad_places)
    return ok


# --- numbers and SIMs --------------------------------------------------------------------------------------


def _phone_ok(
    values: Sequence[str], pattern_for: Callable[[str], re.Pattern[str] | None], *, empty_ok: bool = False
) -> Mask:
    """E.164 numbers valid for their region (or, with ``empty_ok``, none): one pattern made of each
    prefix's (see :func:`~simkeep.lines.importer.msisdn_prefix_pattern`); a prefix without one is left to
    the caller."""
    patterns = {p.pattern for p in map(pattern_for, set(map(_PREFIX, values))) if p is not None}
    if not patterns:
        return (
            np.fromiter(map(operator.not_, values), dtype=np.bool_)
            if empty_ok
            else np.zeros(len(values), dtype=np.bool_)
        )
    return all_matching(_either(frozenset(patterns), empty_ok=empty_ok), values)


_PREFIX = itemgetter(slice(0, 4))


@lru_cache(maxsize=256)
def _either(patterns: frozenset[str], *, empty_ok: bool) -> re.Pattern[str]:
    either = "|".join(f"(?:{p})" for p in sorted(patterns))
    return re.compile(f"(?:{either})?" if empty_ok else either)


# --- times -------------------------------------------------------------------------------------------------

#: Days from 1970-01-01 to the first of each month of a common year.
_MONTH_START = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], dtype=np.int64)
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_TIME_WIDTH = 25


def _number(codes: Codes, start: int, size: int) -> np.ndarray[Any, Any]:
    value = np.zeros(len(codes), dtype=np.int64)
    for i in range(start, start + size):
        value = value * 10 + codes[:, i] - _ZERO
    return value


def _digits_at(codes: Codes, positions: Sequence[int]) -> Mask:
    part = codes[:, list(positions)] - _ZERO
    return cast(Mask, ((part >= 0) & (part <= 9)).all(axis=1))


def utc_seconds(values: Sequence[str]) -> tuple[Mask, np.ndarray[Any, np.dtype[np.int64]]]:
    """Which values are plain timestamps, and their moments in seconds since 1970 (UTC).

    Plain: ``YYYY-MM-DDTHH:MM:SS`` then ``Z`` or a whole-hour offset (``+08:00``), a real date in years 2 to
    9998 (so that no offset moves it off the calendar), hours 0-23, minutes and seconds 0-59: the forms
    :func:`~simkeep.lines.importer.utc_text` converts. Anything else is False, with a moment of 0.
    """
    n = len(values)
    padded = list(map(str.ljust, values, repeat(_TIME_WIDTH, n)))
    codes = char_codes(padded, _TIME_WIDTH)
    if codes is None:  # a value longer than the plain forms, or not ASCII: those rows are not plain
        padded = [
            v.ljust(_TIME_WIDTH) if len(v) in (20, 25) and v.isascii() else " " * _TIME_WIDTH for v in values
        ]
        codes = char_codes(padded, _TIME_WIDTH)
    if codes is None:
        return np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.int64)
    c = codes
    zulu = (c[:, 19] == ord("Z")) & (c[:, 20:] == ord(" ")).all(axis=1)
    sign = np.where(c[:, 19] == ord("+"), 1, np.where(c[:, 19] == ord("-"), -1, 0))
    offset_form = (sign != 0) & _digits_at(c, (20, 21)) & (c[:, 22] == ord(":")) & (c[:, 23] == _ZERO)
    offset_form &= c[:, 24] == _ZERO
    ok = zulu | offset_form
    ok &= _digits_at(c, (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18))
    ok &= (c[:, 4] == ord("-")) & (c[:, 7] == ord("-")) & (c[:, 10] == ord("T"))
    ok &= (c[:, 13] == ord(":")) & (c[:, 16] == ord(":"))
    year, month, day = _number(c, 0, 4), _number(c, 5, 2), _number(c, 8, 2)
    hour, minute, second = _number(c, 11, 2), _number(c, 14, 2), _number(c, 17, 2)
    offset = np.where(zulu, 0, sign * _number(c, 20, 2))
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    safe_month = np.where(month_ok, month, 1)
    days_in_month = _MONTH_DAYS[safe_month] + (leap & (safe_month == 2))
    ok &= (year >= 2) & (year <= 9998) & month_ok & (day >= 1) & (day <= days_in_month)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59) & (offset >= -23) & (offset <= 23)
    # days since 1970-01-01 in the proleptic Gregorian calendar
    before = year - 1
    leaps = before // 4 - before // 100 + before // 400 - (1969 // 4 - 1969 // 100 + 1969 // 400)
    days = (year - 1970) * 365 + leaps + _MONTH_START[safe_month] + (leap & (safe_month > 2)) + day - 1
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset * 3600
    return ok, np.where(ok, seconds, 0)


def _seconds(seconds: np.ndarray[Any, np.dtype[np.int64]]) -> list[int]:
    return cast(list[int], seconds.tolist())


def sqlite_texts(seconds: np.ndarray[Any, np.dtype[np.int64]]) -> list[str]:
    """Moments as SQLAlchemy stores a DateTime on SQLite (naive UTC with microseconds)."""
    return [
        f"{t[:10]} {t[11:]}.000000" for t in np.datetime_as_string(seconds.astype("datetime64[s]")).tolist()
    ]


def pg_texts(values: Sequence[str], plain: Mask) -> list[str]:
    """Plain timestamps as the PostgreSQL writer sends them (``Z`` written as ``+00:00``); the others as
    they are, for the caller to replace or drop."""
    return [
        v[:19] + "+00:00" if p and v[19] == "Z" else v for v, p in zip(values, plain.tolist(), strict=True)
    ]


# --- the chunk ---------------------------------------------------------------------------------------------


class Checked:
    """A chunk's rows checked column by column: which are plainly good, and their values (by column).

    ``ok[i]`` says row ``i`` passes every rule; the values of the other rows are meaningless (and are
    replaced or dropped by the caller). ``values`` holds the file's columns as they are (a plainly good row
    needs no change but its language, country and times). Times are seconds since 1970 for PostgreSQL and
    SQLite's text otherwise; ``changed`` falls back to ``activated``, an absent activity is None.
    """

    __slots__ = ("activated", "activity", "changed", "country", "language", "ok", "values")

    def __init__(self, columns: list[list[str]], *, latest: int, postgres: bool,
                 place_known: Callable[[str, int], bool],
                 phone_pattern: Callable[[str], re.Pattern[str] | None]) -> None:  # fmt: skip
        n = len(columns[0])
        self.values = columns
        (ref, name, doc_type, doc_number, email, phone, language, msisdn, plan, iccid, imsi, kind,
         activated, changed, activity) = self.values  # fmt: skip

        ok = _printable(ref, _PRINTABLE_MAX["ref"]) & _printable(name, _PRINTABLE_MAX["name"])
        ok &= _printable(plan, _PRINTABLE_MAX["plan"])
        is_ric = each("cn_ric".__eq__, doc_type)
        ok &= is_ric | each("passport".__eq__, doc_type)
        document_ok = _ric_ok(doc_number, place_known)
        others = np.flatnonzero(~is_ric).tolist()  # passports (or a bad type), a few in a hundred
        if others:
            document_ok[others] = all_matching(_PASSPORT, list(map(doc_number.__getitem__, others)))
        ok &= document_ok
        self.country: list[str] = np.where(is_ric, "CHN", "XXX").tolist()
        if any(email):
            ok &= all_matching(_EMAIL_OR_NONE, email)
            if max(map(len, email)) > _EMAIL_MAX:
                ok &= each(len, email) <= _EMAIL_MAX
        ok &= _phone_ok(msisdn, phone_pattern)
        if any(phone):
            ok &= np.fromiter(map(str.__ne__, phone, msisdn), dtype=np.bool_, count=n)
            ok &= _phone_ok(phone, phone_pattern, empty_ok=True)
        ok &= where_good(language, _LANGUAGES.__contains__)
        self.language: list[str] = list(map(_LANGUAGES.get, language, language))
        ok &= iccid_ok(iccid) & digits_ok(imsi, 6, 15) & where_good(kind, SIM_KINDS.__contains__)
        plain, moments = utc_seconds(activated)
        ok &= plain & (moments <= latest)
        given = each(bool, changed)
        plain_changed, changed_moments = utc_seconds(changed)
        ok &= ~given | (plain_changed & (changed_moments <= latest) & (changed_moments >= moments))
        has_activity = each(bool, activity)
        plain_activity, activity_moments = utc_seconds(activity)
        ok &= ~has_activity | (plain_activity & (activity_moments <= latest))
        self.ok = ok
        changed_moments = np.where(given, changed_moments, moments)
        # PostgreSQL: whole seconds since 1970, which COPY reads far faster than timestamp text (see
        # importer._PG_STAGE); SQLite: the text SQLAlchemy stores
        time_of: Callable[[np.ndarray[Any, np.dtype[np.int64]]], list[Any]] = (
            _seconds if postgres else sqlite_texts
        )
        self.activated: list[Any] = time_of(moments)
        self.changed: list[Any] = time_of(changed_moments)
        activity_times = time_of(activity_moments)
        self.activity: list[Any] = (
            activity_times
            if has_activity.all()
            else [t if g else None for t, g in zip(activity_times, has_activity.tolist(), strict=True)]
        )
