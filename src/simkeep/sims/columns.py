"""Column-wise checks of a chunk of import lines: the bulk imports' fast path for plainly good rows.

Checking a row field by field in Python costs microseconds per row, most of it in calls, slicing and small
objects rather than in the checks. Here a chunk's lines are split at once and each rule is applied to a
whole column: a compiled pattern mapped over it, a set lookup, or arithmetic over the column's characters in
NumPy (the ICCID's Luhn sum). A row that passes every rule is one the row-by-row checks accept, with the same
values; every other row is left to them, and they say what is wrong with it. The SIM stock import's rules
are here (:func:`stock_columns`); the lines import adds its own in :mod:`simkeep.lines.columns`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

import numpy as np

Mask = np.ndarray[Any, np.dtype[np.bool_]]
Codes = np.ndarray[Any, np.dtype[np.int16]]  # character codes, one row per value

_ZERO = ord("0")


def char_codes(values: Sequence[str], width: int) -> Codes | None:
    """The values (each ``width`` ASCII characters) as a (rows, width) array of character codes, or None
    when one is not ASCII or not ``width`` long (the caller checks a pattern that implies this first)."""
    text = "".join(values)
    if not text.isascii() or len(text) != width * len(values):
        return None
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).reshape(len(values), width).astype(np.int16)


def all_matching(pattern: re.Pattern[str], values: Sequence[str]) -> Mask:
    """Which values the pattern matches whole."""
    return np.fromiter(map(bool, map(pattern.fullmatch, values)), dtype=np.bool_, count=len(values))


def each(test: Callable[[str], object], values: Sequence[str]) -> Mask:
    """Which values pass ``test`` (its result taken as true or false)."""
    return np.fromiter(map(test, values), dtype=np.bool_, count=len(values))


def iccid_ok(values: Sequence[str]) -> Mask:
    """19 or 20 digits, starting 89, with a right Luhn check digit: what ``iccid_problem`` accepts."""
    n = len(values)
    widths = set(map(len, values))
    joined = "".join(values)
    if len(widths) == 1 and widths <= {19, 20} and joined.isascii() and joined.isdigit():  # the usual case
        width = widths.pop()
        digits = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(n, width).astype(np.int16)
        digits -= _ZERO
        if width == 19:
            digits = np.hstack([np.zeros((n, 1), dtype=np.int16), digits])
        ok: Mask = np.ones(n, dtype=np.bool_)
        start = np.full(n, 20 - width)
    else:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        ok = (lengths == 19) | (lengths == 20)
        padded = [
            v.rjust(20, "0") if good and v.isascii() else "0" * 20
            for v, good in zip(values, ok.tolist(), strict=True)
        ]
        codes = char_codes(padded, 20)
        if codes is None:  # pragma: no cover - every padded value is 20 ASCII characters
            return np.zeros(n, dtype=np.bool_)
        digits = (codes - _ZERO).astype(np.int16)
        ok &= ((digits >= 0) & (digits <= 9)).all(axis=1)
        start = np.where(lengths == 20, 0, 1)
    rows = np.arange(n)
    ok &= (digits[rows, start] == 8) & (digits[rows, start + 1] == 9)
    doubled = digits[:, 0::2] * 2
    total = (doubled - 9 * (doubled > 9)).sum(axis=1) + digits[:, 1::2].sum(axis=1)
    ok &= total % 10 == 0
    return ok


def _line_body(text: str) -> str | None:
    """A line without its ending (``\\n`` or ``\\r\\n``), or None if it holds a quote or another carriage
    return: a line the CSV reader must read."""
    body = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    return None if '"' in body or "\r" in body else body


def split_plain(texts: Sequence[str], fields: int) -> tuple[Mask, list[list[str]]]:
    """A chunk's lines split at their commas, as columns: which lines are plain (no quote, no stray carriage
    return, ``fields`` values), and each column's values (empty strings on the other rows).

    ``texts`` are lines as a file yields them, each ending in its only line break (the last may have
    none). A plain line splits as the CSV reader would split it; any other is left to that reader.
    """
    n = len(texts)
    body = "".join(texts)
    ends = body.count("\n")
    if '"' not in body and "\r" not in body and n and ends == n - (not texts[-1].endswith("\n")):
        lines = body.split("\n", n - 1)
        lines[-1] = lines[-1].removesuffix("\n")
        plain = np.ones(n, dtype=np.bool_)
    else:
        bodies = list(map(_line_body, texts))
        plain = np.fromiter((b is not None for b in bodies), dtype=np.bool_, count=n)
        lines = [b or "" for b in bodies]
    commas = np.fromiter(map(str.count, lines, repeat(",")), dtype=np.int64, count=n)
    plain &= commas == fields - 1
    if not plain.all():
        blank = "," * (fields - 1)
        lines = [line if p else blank for line, p in zip(lines, plain.tolist(), strict=True)]
    cells = ",".join(lines).split(",") if n else []
    return plain, [cells[column::fields] for column in range(fields)]


# --- SIM stock ---------------------------------------------------------------------------------------------

_SIM_FIELDS = 6  # iccid, imsi, kind, location, store, batch; then, optionally, the secrets
_LABEL_MAX = 64
_KINDS = frozenset({"physical", "esim"})
_COMP128 = frozenset({"comp128v1", "comp128v2", "comp128v3"})
_HEX = b"0123456789abcdef"  # keys as stored: a key in upper case is left to the row-by-row checks
_KEY_CHARS = 32


def where_good(values: Sequence[Any], good: Callable[[Any], bool]) -> Mask | bool:
    """Which values are good: True when every distinct value is (the usual case, at the cost of one set of
    the column), else a mask of the rows that hold a good one."""
    bad = {value for value in set(values) if not good(value)}
    return True if not bad else ~each(bad.__contains__, values)


def digits_ok(values: Sequence[str], shortest: int, longest: int) -> Mask | bool:
    """Which values are ``shortest`` to ``longest`` ASCII digits."""
    if not values:
        return True
    lengths = set(map(len, values))
    joined = "".join(values)
    if shortest <= min(lengths) and max(lengths) <= longest and joined.isascii() and joined.isdigit():
        return True
    return all_matching(re.compile(f"[0-9]{{{shortest},{longest}}}"), values)


def _keys_ok(values: Sequence[str]) -> Mask | bool:
    """Which values hold lower-case hexadecimal digits only (their lengths are checked by the caller)."""
    joined = "".join(values)
    if joined.isascii() and not joined.encode("ascii").translate(None, _HEX):
        return True
    return all_matching(re.compile(f"[0-9a-f]{{{_KEY_CHARS}}}|"), values)


def stock_columns(
    texts: Sequence[str], columns: tuple[str, ...], stores: dict[str, int]
) -> tuple[Mask, list[list[str]]]:
    """A chunk of SIM stock lines with these ``columns`` checked column by column: which rows are plainly
    good, and the values of every column as the file has them.

    A plainly good row is one :func:`simkeep.sims.importer._stock_row` accepts unchanged: a valid ICCID
    and IMSI, a known kind and location, a store only where the SIM is in a known store, a batch label of at
    most 64 characters and, with the secret columns, an algorithm with the keys it takes in lower-case
    hexadecimal (or none of them). Every other row (padding, upper case, a bad value, ...) is left to it.
    Each rule is first tried on the whole column at once (its distinct values, or its text joined); only a
    column where that fails is checked row by row.
    """
    ok, values = split_plain(texts, len(columns))
    if not texts:
        return ok, values
    iccid, imsi, kind, location, store, label = values[:_SIM_FIELDS]
    ok &= iccid_ok(iccid)
    ok &= digits_ok(imsi, 6, 15)
    ok &= where_good(kind, _KINDS.__contains__)

    def placed(place: tuple[str, str]) -> bool:
        where, code = place
        return (where == "warehouse" and not code) or (where == "store" and code in stores)

    ok &= where_good(list(zip(location, store, strict=True)), placed)
    if max(map(len, label)) > _LABEL_MAX:
        ok &= np.fromiter(map(len, label), dtype=np.int64, count=len(label)) <= _LABEL_MAX
    if len(columns) > _SIM_FIELDS:  # the secret columns follow
        algorithm, k = values[6], values[7]
        opc = values[8] if "opc" in columns else [""] * len(k)
        milenage = "opc" in columns and columns[7] == "k"  # "ki" names a COMP128 key

        def keys_fit(row: tuple[str, int, int]) -> bool:
            name, k_length, opc_length = row
            if name in _COMP128:
                return k_length == _KEY_CHARS and not opc_length
            if name == "milenage":
                return milenage and k_length == opc_length == _KEY_CHARS
            return not name and not k_length and not opc_length

        ok &= where_good(list(zip(algorithm, map(len, k), map(len, opc), strict=True)), keys_fit)
        ok &= _keys_ok(k)
        ok &= _keys_ok(opc)
    return ok, values
