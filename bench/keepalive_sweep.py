"""Benchmark: the daily keep-alive sweep over N synthetic lines (default 10,000,000), SQLite and PostgreSQL.

Runs ``simkeep.keepalive.service.sweep`` (what ``simkeep keepalive sweep`` runs): the due lines' reminders
written and their message jobs enqueued, the lines past their deadline recycled (state, pool, history,
recycle jobs), batches committed as it goes. Prints ``RESULT sweep_10m_sqlite_s`` and
``RESULT sweep_10m_postgres_s`` (seconds; the name is kept whatever ``--lines`` is, the count is printed).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _keepalive_data import database, drop, make_lines
from simkeep.keepalive.service import sweep


def run(backend: str, n: int) -> float:
    """Seconds of one sweep over ``n`` lines on ``backend``."""
    engine, _ = database(backend)
    now = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    try:
        started = time.perf_counter()
        make_lines(engine, n, now)
        print(f"{backend}: {n:,} lines generated in {time.perf_counter() - started:.1f} s", flush=True)
        with Session(engine) as session:
            started = time.perf_counter()
            counts = sweep(session, now=now)
            seconds = time.perf_counter() - started
        print(f"{backend}: {counts.to_dict()}", flush=True)
        return seconds
    finally:
        drop(engine, backend)


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = {b: run(b, args.lines) for b in backends}
    for backend, seconds in results.items():
        print(f"RESULT sweep_10m_{backend}_s {seconds:.2f} s  # {args.lines:,} lines")


if __name__ == "__main__":
    main()
