"""Benchmark: usage events from a CSV file (``simkeep keepalive import-activity``), on SQLite.

Makes ``--lines`` lines and a CSV of ``--events`` events over them, imports it through the real importer and
prints ``RESULT activity_import <n> events/s``.
"""

from __future__ import annotations

import argparse
import shutil
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
    folder = Path(tempfile.mkdtemp(prefix="simkeep-bench-events-"))
    try:
        make_lines(engine, args.lines, now)
        path = folder / "events.csv"
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
        started, cpu = time.perf_counter(), time.process_time()
        result = import_activity(engine, settings, path)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(result.counts())
        # The machine is shared: the CPU time of this process tells the code's own cost apart from waiting.
        rate = args.events / cpu if cpu else 0.0
        print(f"{args.backend}: {seconds:.2f} s wall, {cpu:.2f} s CPU in this process ({rate:,.0f} ev/CPU-s)")
        print(f"RESULT activity_import {args.events / seconds:.0f} events/s")
    finally:
        drop(engine, args.backend)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
