"""Benchmark: usage events from a CSV file (``simkeep keepalive import-activity``), on SQLite.

Makes ``--lines`` lines and a CSV of ``--events`` events over them, imports it through the real importer and
prints ``RESULT activity_import <n> events/s``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _keepalive_data import database, drop, make_lines
from simkeep.config import Settings
from simkeep.keepalive.importer import import_activity


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    now = datetime.now(UTC)
    engine, url = database(args.backend)
    try:
        make_lines(engine, args.lines, now)
        path = Path(tempfile.mkdtemp()) / "events.csv"
        kinds = ("voice", "sms", "data", "topup")
        with path.open("w") as out:
            out.write("event_id,msisdn,kind,occurred_at\n")
            for i in range(args.events):
                at = (now - timedelta(minutes=i % 100_000)).isoformat(timespec="seconds")
                out.write(f"ev{i},+86130{i % args.lines:08d},{kinds[i % 4]},{at}\n")
        settings = Settings(
            environment="test",
            database_url=url,
            secret_key="bench-secret-key-0123456789abcdef0123",  # noqa: S106 - a throwaway key for a benchmark database
        )
        started = time.perf_counter()
        result = import_activity(engine, settings, path)
        seconds = time.perf_counter() - started
        print(result.counts())
        print(f"RESULT activity_import {args.events / seconds:.0f} events/s")
    finally:
        drop(engine, args.backend)


if __name__ == "__main__":
    main()
