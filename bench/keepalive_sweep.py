"""Benchmark: the daily keep-alive sweep over N synthetic lines (default 10,000,000), SQLite and PostgreSQL.

Runs ``simkeep.keepalive.service.sweep`` (what ``simkeep keepalive sweep`` runs, with its default workers:
two sessions on PostgreSQL, one on SQLite): the due lines' reminders
written and their message jobs enqueued, the lines past their deadline recycled (state, pool, history,
recycle jobs), batches committed as it goes. Prints ``RESULT sweep_10m_sqlite_s`` and
``RESULT sweep_10m_postgres_s`` (seconds; the name is kept whatever ``--lines`` is, the count is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _keepalive_data import database, drop, make_lines
from _machine import report
from simkeep.db.engine import make_engine
from simkeep.keepalive.service import PG_WORKERS, sweep


def run(backend: str, n: int) -> float:
    """Seconds of one sweep over ``n`` lines on ``backend``."""
    engine, url = database(backend)
    now = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    try:
        started = time.perf_counter()
        make_lines(engine, n, now)
        print(f"{backend}: {n:,} lines generated in {time.perf_counter() - started:.1f} s", flush=True)
        # As many pooled connections as the sweep has workers, opened beforehand: their PostgreSQL backends
        # are the ones to account for.
        workers = PG_WORKERS if backend == "postgres" else 1
        worker = make_engine(url, pool_size=workers)
        try:
            pids = _open_backends(worker, workers)
            with Session(worker) as session:
                cpu = _cpu_seconds(pids)
                started = time.perf_counter()
                counts = sweep(session, now=now)
                seconds = time.perf_counter() - started
                cpu = _cpu_seconds(pids) - cpu
                if pids and _open_backends(worker, workers) != pids:
                    cpu = float("nan")  # the pool changed connections: the figure would be wrong
        finally:
            worker.dispose()
        print(f"{backend}: {counts.to_dict()}", flush=True)
        # The machine is shared: CPU seconds (this process plus its PostgreSQL backend) tell the sweep's own
        # cost apart from waiting for other work.
        print(f"{backend}: {seconds:.2f} s wall, {cpu:.2f} s CPU", flush=True)
        return seconds
    finally:
        drop(engine, backend)


def _open_backends(engine: Engine, n: int) -> list[int]:
    """The PostgreSQL backend pids of ``n`` connections of the pool, checked out at once (none on SQLite)."""
    if engine.dialect.name != "postgresql":
        return []
    conns = [engine.connect() for _ in range(n)]
    try:
        return sorted(int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in conns)
    finally:
        for c in conns:
            c.close()


def _cpu_seconds(backend_pids: list[int]) -> float:
    """CPU seconds used so far by this process and by the given PostgreSQL backends (Linux /proc)."""
    used = time.process_time()
    for pid in backend_pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except (OSError, IndexError, ValueError):
            return float("nan")  # the database runs elsewhere
    return used


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    report()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = {b: run(b, args.lines) for b in backends}
    for backend, seconds in results.items():
        print(f"RESULT sweep_10m_{backend}_s {seconds:.2f} s  # {args.lines:,} lines")


if __name__ == "__main__":
    main()
