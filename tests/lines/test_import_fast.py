"""The lines import's fast paths give what the full way gives: times, and the reader's paused collector."""

from __future__ import annotations

import gc
import hmac
import random

import pytest

from simkeep.lines.importer import (
    LINE_COLUMNS,
    DocumentHasher,
    _number_descs,
    _number_pattern,
    parse_timestamp,
    pg_stamp,
    sqlite_stamp,
    utc_moment,
    utc_text,
)
from simkeep.sims.columns import split_plain
from simkeep.sims.importer import gc_paused, one_record


def _timestamp(rng: random.Random) -> str:
    """A near-ISO 8601 timestamp: mostly plain, sometimes out of range or in a rarer form."""
    year = (
        rng.choice([1, 2, 1999, 2000, 2024, 9998, 9999]) if rng.random() < 0.1 else rng.randrange(1900, 2100)
    )
    value = (
        f"{year:04d}-{rng.randrange(0, 14):02d}-{rng.randrange(0, 33):02d}"
        f"T{rng.randrange(0, 26):02d}:{rng.randrange(0, 61):02d}:{rng.randrange(0, 61):02d}"
    )
    zone = rng.choice(["Z", "+08:00", "-05:00", "+23:00", "-23:00", "+00:00", "+05:30", "", "+24:00", "z"])
    return value + zone + (".5" if rng.random() < 0.02 else "")


class TestUtcText:
    """``utc_text`` writes plain timestamps as the datetime path does, and leaves the others to it."""

    def test_same_text_as_the_datetime_path_on_random_input(self) -> None:
        """On random near-timestamps, every value it converts is valid and converts to the same text."""
        rng = random.Random(20261130)
        converted = 0
        for _ in range(100_000):
            value = _timestamp(rng)
            fast = utc_text(value)
            if fast is None:
                continue
            converted += 1
            parsed = parse_timestamp(value)
            assert not isinstance(parsed, str), value
            assert fast == sqlite_stamp(value, parsed), value
            pg = value[:19] + "+00:00" if value[19] == "Z" else value
            assert pg == pg_stamp(value, parsed), value
        assert converted > 20_000

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2024-05-01T00:30:00+08:00", "2024-04-30 16:30:00.000000"),
            ("2024-03-01T02:00:00+08:00", "2024-02-29 18:00:00.000000"),
            ("2023-12-31T20:00:00-05:00", "2024-01-01 01:00:00.000000"),
            ("2024-05-01T08:30:00Z", "2024-05-01 08:30:00.000000"),
        ],
    )
    def test_crosses_days_months_and_years(self, value: str, expected: str) -> None:
        """An offset that moves the moment to another day, month or year gives that day in UTC."""
        assert utc_text(value) == expected

    @pytest.mark.parametrize(
        "value",
        ["2024-02-30T00:00:00Z", "2024-05-01T08:30:00", "2024-05-01T08:30:00+05:30", "0001-01-01T00:00:00Z"],
    )
    def test_leaves_the_rest_to_datetime(self, value: str) -> None:
        """Impossible dates, missing zones, part-hour offsets and the calendar's ends are not converted."""
        assert utc_text(value) is None


class TestUtcMoment:
    """Moments read the datetime way compare like their UTC text, even past the calendar's ends."""

    @pytest.mark.parametrize(
        ("early", "late"),
        [
            ("0001-01-01T00:00:00+08:00", "0001-01-01T00:00:00Z"),
            ("2024-05-01T08:30:00.5+05:30", "2024-05-01T08:30:00Z"),
            ("9999-12-31T23:00:00Z", "9999-12-31T23:00:00-05:00"),
        ],
    )
    def test_order(self, early: str, late: str) -> None:
        """The earlier moment sorts first, whether or not its UTC lies inside the calendar."""
        first, second = parse_timestamp(early), parse_timestamp(late)
        assert not isinstance(first, str)
        assert not isinstance(second, str)
        assert utc_moment(early, first) < utc_moment(late, second)


class TestGcPaused:
    """The readers pause the cycle collector while they build a batch, and put it back as it was."""

    def test_restores_the_collector(self) -> None:
        """Enabled before, enabled after (also after an error); disabled before, still disabled after."""
        assert gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(RuntimeError), gc_paused():
            raise RuntimeError
        assert gc.isenabled()
        gc.disable()
        try:
            with gc_paused():
                pass
            assert not gc.isenabled()
        finally:
            gc.enable()


class TestSplitPlain:
    """``split_plain`` splits a chunk's lines as the CSV reader does, and leaves every other line to it."""

    def test_same_values_as_the_csv_reader_on_random_lines(self) -> None:
        """On random chunks of commas, quotes, spaces and line ends, what it splits the reader splits so."""
        rng = random.Random(20261130)
        split = 0
        for _ in range(400):
            texts = []
            for _ in range(rng.randrange(1, 60)):
                fields = rng.choice([14, 15, 15, 15, 16])
                values = [
                    "".join(rng.choice("ab 1,\t") for _ in range(rng.randrange(4))) for _ in range(fields)
                ]
                if rng.random() < 0.2:
                    values[rng.randrange(fields)] += rng.choice(['"', "\r", '""'])
                texts.append(",".join(values) + rng.choice(["\n", "\n", "\r\n"]))
            if rng.random() < 0.5:
                texts[-1] = texts[-1].rstrip("\r\n")
            plain, columns = split_plain(texts, len(LINE_COLUMNS))
            for i, text in enumerate(texts):
                if plain[i]:
                    split += 1
                    assert [column[i] for column in columns] == one_record(text, len(LINE_COLUMNS)), text
        assert split > 200

    def test_leaves_quoted_and_broken_lines_to_the_reader(self) -> None:
        """A quote or a stray carriage return anywhere, or a wrong number of values, takes the reader's way;
        a CRLF line ending does not."""
        plain = ",".join(["v"] * len(LINE_COLUMNS))
        texts = [
            plain + "\n",
            plain + "\r\n",
            '"' + plain + '"\n',
            plain + ",v\n",
            "\n",
            "v\r" + plain + "\n",
        ]
        ok, columns = split_plain(texts, len(LINE_COLUMNS))
        assert ok.tolist() == [True, True, False, False, False, False]
        assert [column[1] for column in columns] == ["v"] * len(LINE_COLUMNS)
        assert split_plain([], 3)[1] == [[], [], []]


class TestNumberPattern:
    """``_number_pattern`` is the per-length union of the number descriptions it replaces."""

    def test_same_verdict_as_the_descriptions(self) -> None:
        """On random national numbers of many calling codes, one pattern says what the descriptions say."""
        rng = random.Random(20261130)
        for _ in range(50_000):
            code = rng.choice([1, 7, 33, 44, 49, 81, 86, 91, 375, 852, 886])
            national = str(rng.randrange(1, 10)) + "".join(
                str(rng.randrange(10)) for _ in range(rng.randrange(14))
            )
            descs, pattern = _number_descs(code), _number_pattern(code, len(national))
            assert (descs is None) == (pattern is None)
            if descs is not None and pattern is not None:
                general, types = descs
                expected = all(
                    (not lengths or len(national) in lengths) and regex.fullmatch(national) is not None
                    for lengths, regex in [general]
                ) and any(
                    (not lengths or len(national) in lengths) and regex.fullmatch(national)
                    for lengths, regex in types
                )
                assert (pattern.fullmatch(national) is not None) == expected, (code, national)


class TestDocumentHasher:
    """The precomputed-pad HMAC gives ``hmac.digest``'s value for every key length and number."""

    @pytest.mark.parametrize("key_size", [0, 1, 32, 63, 64, 65, 200])
    def test_same_digest_as_hmac(self, key_size: int) -> None:
        rng = random.Random(key_size)
        key = rng.randbytes(key_size)
        digest = DocumentHasher(key)
        for _ in range(500):
            number = "".join(rng.choice("0123456789X张 ") for _ in range(rng.randrange(0, 40)))
            assert digest(number) == hmac.digest(key, number.encode(), "sha256").hex()
