"""The column-wise check of a chunk gives what checking row by row gives: the same lines, subscribers,
errors and payloads, on random rows with every kind of flaw (see ``simkeep.lines.columns``)."""

from __future__ import annotations

import csv
import io
import random
import sqlite3
from array import array
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from stdnum.cn import ric

from simkeep.lines.columns import utc_seconds
from simkeep.lines.importer import (
    LINE_COLUMNS,
    DocumentHasher,
    RowError,
    _admit,
    _Latest,
    _Line,
    _line_batch,
    _pg_times,
    _serialise,
    check_line,
    msisdn_prefix_pattern,
    pg_stamp,
    sqlite_stamp,
    utc_text,
)
from simkeep.sims.importer import one_record
from tests import factories

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
LATEST = _Latest(sqlite_stamp("", NOW), int(NOW.timestamp()))


def _stamp(rng: random.Random) -> str:
    moment = datetime(2010, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(17 * 365 * 86400))
    form = rng.random()
    if form < 0.4:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form < 0.8:
        return (moment + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
    return rng.choice(
        [
            (moment - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S-05:00"),
            moment.strftime("%Y-%m-%dT%H:%M:%S.250Z"),  # fractions: the row-by-row way only
            moment.strftime("%Y-%m-%dT%H:%M:%S+05:30"),
            moment.strftime("%Y-%m-%d %H:%M:%SZ"),
            moment.strftime("%Y-%m-%dT%H:%M:%S"),  # no zone: an error
            "2024-02-30T00:00:00Z",
            "0001-01-01T00:00:00+08:00",
            "9999-12-31T23:59:59-01:00",
            "2027-06-01T00:00:00Z",  # in the future
            "2026-12-03T08:04:59Z",  # within the allowed clock skew
            "2026-12-03T08:05:01Z",
            "２０２４-05-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T08:30:00+24:00",
            "2024-5-01T08:30:00Z",
            "",
        ]
    )


def _row(rng: random.Random, n: int, *, flaws: float = 0.2) -> list[str]:
    """A good row with a chance (``flaws``) of a flaw in one of its fields."""
    if rng.random() < 0.9:
        regions = ["110101", "310104", "440305"] + ["999999"] * (flaws > 0)
        body = f"{rng.choice(regions)}{rng.randrange(1950, 2010)}"
        body += f"{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}{rng.randrange(1000):03d}"
        doc_type, number = "cn_ric", body + ric.calc_check_digit(body + "0")
    else:
        doc_type, number = "passport", f"E{rng.randrange(10**8):08d}"
    ref = f"C{rng.randrange(n // 2 + 1):06d}"  # some holders hold several lines
    row = [
        ref,
        rng.choice(["张伟", "Li Lei", "O'Brien"]),
        doc_type,
        number,
        rng.choice(["", f"{ref}@example.cn"]),
        rng.choice(["", "", f"+86139{rng.randrange(10**8):08d}"]),
        rng.choice(["", "zh-CN", "en"]),
        f"+86138{rng.randrange(10**8):08d}",
        rng.choice(["KEEP8", "BASIC29"]),
        factories.make_iccid(rng.randrange(10**12)),
        f"46001{rng.randrange(10**10):010d}",
        rng.choice(["physical", "esim"]),
        _stamp(rng),
        _stamp(rng) if rng.random() < 0.3 else "",
        _stamp(rng) if rng.random() < 0.9 else "",
    ]
    if rng.random() < flaws:
        field = rng.randrange(len(row))
        row[field] = rng.choice(
            [
                "",
                " " + row[field],
                row[field] + " ",
                row[field].lower(),
                row[field][:-1],
                row[field] + "0",
                row[field].replace("1", "l"),
                row[field][:-1] + "x",
                "a\\b",
                "\u00a0",
                "é" * 3,
                "x" * 70,
                "+8613800000000",  # a repeated number, or not a number at all
                "+12025550123",
                "+447911123456",
                "+390612345678",
                "+00123",
                "+86",
                "+8680012345678",
                "89860000000000000000",
                "8986000000000000001",
                "1234567890123456789",
                "460010000000001",
                "12345",
                "passport",
                "cn_ric",
                "en",
                "zh",
                "wifi",
                "esim",
                "11010119900307123x",
                "11010119900230123X",
            ]
        )
    return row


def _reference(rows: list[tuple[int, list[str] | str]], key: bytes, *, postgres: bool) -> tuple[Any, ...]:
    """The batch as the import built it row by row before the column-wise check (its code, kept here)."""
    digest = DocumentHasher(key)
    stamp = pg_stamp if postgres else sqlite_stamp
    subs: list[list[Any]] = []
    lines: list[list[Any]] = []
    numbers: array[int] = array("i")
    errors: list[RowError] = []
    refs: dict[str, int] = {}
    seen: dict[str, int] = {}
    for line_no, raw in rows:
        checked: _Line | tuple[str, str]
        if isinstance(raw, str):
            checked = ("row", raw)
        else:
            checked = check_line(raw, digest, LATEST.text, stamp)
            if not isinstance(checked, _Line) and any(value != value.strip() for value in raw):
                checked = check_line([value.strip() for value in raw], digest, LATEST.text, stamp)
        problem = _admit(checked, line_no, subs, lines, refs, seen) if isinstance(checked, _Line) else checked
        if problem is None:
            numbers.append(line_no)
        else:
            errors.append(RowError(line_no, *problem))
    order = sorted(range(len(subs)), key=lambda k: subs[k][3])
    position = {old: new for new, old in enumerate(order)}
    for row in lines:
        row[1] = position[row[1]]
    ordered = [[k, *subs[old]] for k, old in enumerate(order)]
    if postgres:
        ordered = [[str(s[0]), *s[1:7], s[7] or "", s[8] or "", s[9]] for s in ordered]
        lines = [[str(r[0]), str(r[1]), *r[2:]] for r in lines]
    sub_columns = [list(c) for c in zip(*ordered, strict=True)] if ordered else [[]] * 10
    line_columns = [list(c) for c in zip(*lines, strict=True)] if lines else [[]] * 11
    if postgres:
        times = [_pg_times(column) for column in line_columns[8:11]]
        line_columns[8:11] = [seconds for seconds, _ in times] + [texts for _, texts in times]
    payload, sub_payload = _serialise(sub_columns, line_columns, postgres)
    return errors, numbers, payload, sub_payload


def _pg_rows(payload: str) -> list[list[Any]]:
    """The staged lines of a COPY text, each time (seconds since 1970, or text) read as a moment."""
    rows: list[list[Any]] = []
    for line in payload.splitlines():
        values = line.split("\t")
        moments = [
            datetime.fromtimestamp(int(seconds), UTC)
            if seconds
            else datetime.fromisoformat(text)
            if text
            else None
            for seconds, text in zip(values[8:11], values[11:14], strict=True)
        ]
        rows.append([*values[:8], *moments])
    return rows


def _tables(payload: bytes) -> tuple[list[Any], list[Any]]:
    db = sqlite3.connect(":memory:")
    db.deserialize(payload)
    subs = db.execute("SELECT * FROM sk_import_subs ORDER BY k").fetchall()
    lines = db.execute("SELECT * FROM sk_import_lines ORDER BY k").fetchall()
    db.close()
    return subs, lines


class TestColumnWiseCheck:
    """``_line_batch`` (column-wise, then row by row for the rest) equals the row-by-row reference."""

    @pytest.mark.parametrize("postgres", [True, False], ids=["postgresql", "sqlite"])
    @pytest.mark.parametrize("seed", range(6))
    def test_same_batch_as_row_by_row(self, seed: int, postgres: bool) -> None:
        rng = random.Random(seed)
        values = [_row(rng, 1500) for _ in range(1500)]
        values.insert(100, list(values[99]))  # a row repeated whole: every key at once
        texts = _texts(values, rng)
        texts[7] = "a,b,c\n"  # a row the reader cannot split into the columns
        texts[50] = "\n"  # a blank line: no row at all
        texts[60] = '"' + texts[60]  # a quote left open
        key = rng.randbytes(32)
        batch = _line_batch(FIRST, texts, digest=DocumentHasher(key), latest=LATEST, postgres=postgres)
        rows = _records(texts)
        errors, numbers, payload, sub_payload = _reference(rows, key, postgres=postgres)
        assert batch.errors == errors
        assert batch.lines == numbers
        assert batch.rows == len(rows) == len(texts) - 1
        if postgres:
            assert _pg_rows(batch.payload) == _pg_rows(payload)
            assert batch.extra.subscribers == sub_payload
        else:
            assert _tables(batch.payload) == _tables(payload)
        assert len(numbers) > 300  # many rows are good,
        assert len(errors) > 150  # and every kind of flaw is met
        assert RowError(FIRST + 7, "row", "expected 15 fields, found 3") in batch.errors

    def test_plainly_good_chunk(self) -> None:
        """A chunk without flaws or repeats takes the column-wise way from end to end."""
        rng = random.Random(7)
        values: list[list[str]] = []
        for n in range(500):
            row = _row(random.Random(rng.random()), 10**9, flaws=0)
            row[0], row[7] = f"R{n}", f"+86138{n:08d}"
            row[12:15] = ["2024-05-01T00:30:00+08:00", "", "2024-06-01T00:00:00Z"]
            values.append(row)
        texts = [",".join(row) + "\n" for row in values]
        batch = _line_batch(FIRST, texts, digest=DocumentHasher(b"k"), latest=LATEST, postgres=True)
        errors, numbers, payload, _ = _reference(_records(texts), b"k", postgres=True)
        assert (batch.errors, batch.lines, _pg_rows(batch.payload)) == (errors, numbers, _pg_rows(payload))
        assert {tuple(row.split("\t")[11:14]) for row in batch.payload.splitlines()} == {("", "", "")}


FIRST = 2


def _texts(rows: list[list[str]], rng: random.Random) -> list[str]:
    """The rows as lines of a file: most plain, some with every value quoted, some ending in CRLF, the last
    without a line break."""
    texts = []
    for row in rows:
        out = io.StringIO()
        quoting = csv.QUOTE_ALL if rng.random() < 0.05 else csv.QUOTE_MINIMAL
        csv.writer(out, quoting=quoting, lineterminator=rng.choice(["\n"] * 9 + ["\r\n"])).writerow(row)
        texts.append(out.getvalue())
    texts[-1] = texts[-1].rstrip("\r\n")
    return texts


def _records(texts: list[str]) -> list[tuple[int, list[str] | str]]:
    """What the CSV reader makes of each line (blank lines dropped), with its line number."""
    rows = [(FIRST + i, one_record(text, len(LINE_COLUMNS))) for i, text in enumerate(texts)]
    return [(n, raw) for n, raw in rows if raw is not None]


class TestCalendarEnds:
    """A time before the year 1 in UTC is refused where it cannot be stored, and kept where it can."""

    def test_before_the_year_one_in_utc(self) -> None:
        row = _row(random.Random(3), 10)
        row[:] = [v.strip() for v in row]
        row[12] = "0001-01-01T00:00:00+08:00"
        digest = DocumentHasher(b"k")
        assert check_line(row, digest, LATEST.text, sqlite_stamp) == (
            "activated_at",
            "lies before the year 1 in UTC",
        )
        line = check_line(row, digest, LATEST.text, pg_stamp)
        assert isinstance(line, _Line), line
        assert line.activated_at == "0001-01-01T00:00:00+08:00"


class TestUtcSeconds:
    """The column-wise times agree with ``utc_text`` on which values are plain and on their moments."""

    def test_same_moments_as_utc_text(self) -> None:
        rng = random.Random(20261203)
        values = [_stamp(rng) for _ in range(20_000)]
        plain, seconds = utc_seconds(values)
        for value, is_plain, moment in zip(values, plain.tolist(), seconds.tolist(), strict=True):
            text = utc_text(value)
            if is_plain:
                assert text is not None, value
                assert datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S.000000") == text
            else:
                assert text is None, value


class TestPrefixPattern:
    """``msisdn_prefix_pattern`` accepts only the numbers ``fast_msisdn_problem`` accepts."""

    def test_never_accepts_what_the_number_check_refuses(self) -> None:
        from simkeep.identifiers import msisdn_problem

        rng = random.Random(11)
        for _ in range(20_000):
            code = rng.choice(["1", "7", "39", "44", "86", "852", "886", "800", "0"])
            number = "+" + code + "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 14)))
            pattern = msisdn_prefix_pattern(number[:4])
            if pattern is not None and pattern.fullmatch(number):
                assert msisdn_problem(number) is None, number

    @pytest.mark.parametrize("prefix", ["+861", "+337", "+491", "+852"])
    def test_has_a_pattern_for_common_prefixes(self, prefix: str) -> None:
        assert msisdn_prefix_pattern(prefix) is not None
