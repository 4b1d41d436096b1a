"""The lines import's fast paths give what the full way gives: times, and the reader's paused collector."""

from __future__ import annotations

import gc
import random

import pytest

from simkeep.lines.importer import parse_timestamp, pg_stamp, sqlite_stamp, utc_moment, utc_text
from simkeep.sims.importer import gc_paused


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
