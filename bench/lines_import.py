"""Benchmark ``simkeep lines import``: migrating 1,000,000 lines with their history, on SQLite and PostgreSQL.

Run from the repository root: ``python bench/lines_import.py [--rows N]``. The generated file has 800,000
holders per million lines (one in four holds two numbers, on adjacent rows), 95% CN resident IDs with valid
check characters and 5% passports, numbers in random order, contact e-mail on half and a contact phone on
a third of the rows, a SIM change on 30% and five plan codes the import creates. Each line becomes a
subscriber (or reuses one), a line, a SIM, a SIM-change record and an HLR entry. The last lines are
``RESULT lines_import_<backend> <lines/s> lines/s``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stdnum.cn import ric

from simkeep.lines.importer import LINE_COLUMNS
from sims_import import main, with_luhn  # type: ignore[import-not-found]  # run as a script from bench/

REGIONS = ["110101", "110102", "110105", "110108", "120101", "310101", "310104", "320102", "330106",
           "350203", "370102", "420111", "440106", "440305", "510107", "610103"]  # fmt: skip
PLANS = ["KEEP8", "KEEP18", "BASIC29", "DATA59", "FAMILY99"]
_EPOCH = datetime(2012, 1, 1, tzinfo=UTC)
_CST = timedelta(hours=8)


def _resident_id(rng: random.Random) -> str:
    born = datetime(1990, 1, 1) + timedelta(days=rng.randrange(16 * 365))  # noqa: DTZ001 - a date only
    body = f"{rng.choice(REGIONS)}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + ric.calc_check_digit(body + "0")


def _stamp(moment: datetime, rng: random.Random) -> str:
    """ISO 8601, half in UTC with Z and half in China time, as exports mix them."""
    if rng.random() < 0.5:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (moment + _CST).strftime("%Y-%m-%dT%H:%M:%S+08:00")


def write_lines_csv(path: Path, rows: int, _options: object = None) -> None:
    """The migration file described in the module docstring."""
    rng = random.Random(20261125)
    subscriber = 0
    second_line = False
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(LINE_COLUMNS) + "\n")
        for n in range(rows):
            if not second_line:
                subscriber += 1
                passport = rng.random() < 0.05
                document = f"E{rng.randrange(10**8):08d}" if passport else _resident_id(rng)
                name = "Li Lei" if passport else rng.choice(["张伟", "王芳", "李娜", "刘洋", "陈静"])
                email = f"holder{subscriber}@example.cn" if rng.random() < 0.5 else ""
                contact = f"+86139{rng.randrange(10**8):08d}" if rng.random() < 0.33 else ""
                language = "en" if passport else rng.choice(["", "zh-CN"])
                kind_doc = "passport" if passport else "cn_ric"
                holder = f"C{subscriber:09d},{name},{kind_doc},{document},{email},{contact},{language}"
            msisdn = f"+86138{(n * 7_919_081 + 13) % 10**8:08d}"  # a permutation: numbers in random order
            activated = _EPOCH + timedelta(seconds=rng.randrange(12 * 365 * 86400))
            changed = activated + timedelta(days=rng.randrange(1, 400)) if rng.random() < 0.3 else None
            activity = activated + timedelta(days=rng.randrange(1, 500))
            kind = "esim" if n % 10 == 0 else "physical"
            out.write(
                f"{holder},{msisdn},{PLANS[n % len(PLANS)]},{with_luhn(f'89861{n:013d}')},46001{n:010d},"
                f"{kind},{_stamp(activated, rng)},{_stamp(changed, rng) if changed else ''},"
                f"{_stamp(activity, rng)}\n"
            )
            second_line = not second_line and rng.random() < 0.25 and n + 1 < rows


if __name__ == "__main__":
    main("lines_import", "lines", write_lines_csv, ["lines", "import"])
