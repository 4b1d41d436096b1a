"""Benchmark: usage events from a CSV file (``simkeep keepalive import-activity``), on SQLite.

Makes ``--lines`` lines and a CSV of ``--events`` events over them, imports it through the real importer and
prints ``RESULT activity_import <n> events/s``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _keepalive_data import database, drop, make_lines
from _machine import report
from simkeep.config import Settings
from simkeep.keepalive.importer import import_activity
from sims_import import settle  # type: ignore[import-not-found]  # run as a script from bench/


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    report()
    now = datetime.now(UTC)
    engine, url = database(args.backend)
    folder = Path(tempfile.mkdtemp(prefix="simkeep-bench-events-"))
    try:
        make_lines(engine, args.lines, now)
        path = folder / "events.csv"
        kinds = ("voice", "sms", "data", "topup")
        # A day's export of a mediation system: the events of the 24 hours up to the lines' newest activity
        # (an hour ago), in time order, at second resolution, each line active about every 2.4 hours; so
        # each batch of the import moves the clocks of (nearly) every line.
        start = now - timedelta(hours=25)
        step = 86_400 / args.events
        with path.open("w") as out:
            out.write("event_id,msisdn,kind,occurred_at\n")
            for i in range(args.events):
                at = (start + timedelta(seconds=int(i * step))).isoformat(timespec="seconds")
                out.write(f"ev{i},+86130{i % args.lines:08d},{kinds[i % 4]},{at}\n")
        settings = Settings(
            environment="test",
            database_url=url,
            secret_key="bench-secret-key-0123456789abcdef0123",  # noqa: S106 - a throwaway key for a benchmark database
        )
        os.sync()  # the lines and the file just written would otherwise be written back during the run
        settle(engine)
        started, cpu, reader = time.perf_counter(), time.process_time(), _children_cpu()
        result = import_activity(engine, settings, path)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        reader = _children_cpu() - reader  # the reader process (a file this big is read in one)
        print(result.counts())
        # The machine is shared: the CPU time tells the code's own cost apart from waiting.
        rate = args.events / (cpu + reader) if cpu + reader else 0.0
        print(
            f"{args.backend}: {seconds:.2f} s wall, {cpu:.2f} s CPU writing, {reader:.2f} s in "
            f"the reader ({rate:,.0f} ev/CPU-s)"
        )
        print(f"RESULT activity_import {args.events / seconds:.0f} events/s")
    finally:
        drop(engine, args.backend)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
