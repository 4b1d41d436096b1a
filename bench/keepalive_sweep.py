"""Benchmark: the daily keep-alive sweep over N synthetic lines (default 10,000,000), SQLite and PostgreSQL.

Runs ``simkeep.keepalive.service.sweep`` (what ``simkeep keepalive sweep`` runs): the due lines' reminders
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

from sqlalchemy import text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _keepalive_data import database, drop, make_lines
from simkeep.db.engine import make_engine
from simkeep.keepalive.service import sweep


def run(backend: str, n: int) -> float:
    """Seconds of one sweep over ``n`` lines on ``backend``."""
    engine, url = database(backend)
    now = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    try:
        started = time.perf_counter()
        make_lines(engine, n, now)
        print(f"{backend}: {n:,} lines generated in {time.perf_counter() - started:.1f} s", flush=True)
        worker = make_engine(url, pool_size=1)  # one connection: one PostgreSQL backend to account for
        try:
            with Session(worker) as session:
                backend_pid = _backend_pid(session)
                cpu = _cpu_seconds(backend_pid)
                started = time.perf_counter()
                counts = sweep(session, now=now)
                seconds = time.perf_counter() - started
                cpu = _cpu_seconds(backend_pid) - cpu
                if backend_pid is not None and _backend_pid(session) != backend_pid:
                    cpu = float("nan")  # the pool changed connection: the figure would be wrong
        finally:
            worker.dispose()
        print(f"{backend}: {counts.to_dict()}", flush=True)
        # The machine is shared: CPU seconds (this process plus its PostgreSQL backend) tell the sweep's own
        # cost apart from waiting for other work.
        print(f"{backend}: {seconds:.2f} s wall, {cpu:.2f} s CPU", flush=True)
        return seconds
    finally:
        drop(engine, backend)


def _backend_pid(session: Session) -> int | None:
    if session.get_bind().dialect.name != "postgresql":
        return None
    return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _cpu_seconds(backend_pid: int | None) -> float:
    """CPU seconds used so far by this process and, when given, by a PostgreSQL backend (Linux /proc)."""
    used = time.process_time()
    if backend_pid is not None:
        try:
            fields = Path(f"/proc/{backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
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
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = {b: run(b, args.lines) for b in backends}
    for backend, seconds in results.items():
        print(f"RESULT sweep_10m_{backend}_s {seconds:.2f} s  # {args.lines:,} lines")


if __name__ == "__main__":
    main()
