"""Benchmark ``simkeep sims import``: 1,000,000 rows of SIM stock on SQLite and on PostgreSQL.

Run from the repository root: ``python bench/sims_import.py [--rows N] [--no-secrets]``. It writes its own
CSV (valid Luhn ICCIDs, 10% eSIMs, 5% kept in stores; with each SIM's secrets, as card vendors deliver
them: Milenage K and OPc for nine SIMs in ten, a COMP128v3 Ki for the tenth) to a temporary directory,
creates a freshly migrated database for each backend (a temporary SQLite file; a new schema in
SIMKEEP_BENCH_POSTGRES_URL, dropped afterwards), runs the real command in a child process as a user would,
and prints the wall time, the rate and the child's peak resident memory. The last lines are
``RESULT sims_import_<backend> <rows/s> rows/s``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from _machine import report  # type: ignore[import-not-found]  # run as a script from bench/
from simkeep.db import migrate
from simkeep.db.engine import make_engine
from simkeep.identifiers import luhn_valid

POSTGRES_URL = os.environ.get("SIMKEEP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
STORES = [f"S{i:03d}" for i in range(1, 11)]


def with_luhn(body: str) -> str:
    """``body`` with the Luhn check digit appended."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def write_sims_csv(path: Path, rows: int, options: argparse.Namespace) -> None:
    """SIM stock: sequential ICCIDs and IMSIs as they come from a card vendor, with random secrets."""
    secrets = not options.no_secrets
    rng = random.Random(20261130)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("iccid,imsi,kind,location,store,batch" + (",auth_algorithm,k,opc\n" if secrets else "\n"))
        for n in range(rows):
            kind = "esim" if n % 10 == 9 else "physical"
            store = STORES[n % len(STORES)] if n % 20 == 7 else ""
            location = "store" if store else "warehouse"
            auth = ""
            if secrets:
                k = f"{rng.getrandbits(128):032x}"
                auth = f",comp128v3,{k}," if n % 10 == 3 else f",milenage,{k},{rng.getrandbits(128):032x}"
            out.write(
                f"{with_luhn(f'89860{n:013d}')},46000{n:010d},{kind},{location},{store},B{n // 100_000}"
                f"{auth}\n"
            )


@contextmanager
def fresh_database(backend: str, workdir: Path) -> Iterator[tuple[str, Engine]]:
    """A freshly migrated database (SQLite file or PostgreSQL schema), removed afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        try:
            yield url, engine
        finally:
            engine.dispose()
            for leftover in workdir.glob("bench.db*"):  # its pages need not reach the disk now (see main)
                leftover.unlink()
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL, pool_size=1)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        yield url, engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass
class Run:
    """One measured run of the command."""

    seconds: float
    peak_rss_mb: float
    output: dict[str, object]


def run_cli(args: list[str], database_url: str) -> Run:
    """Run ``simkeep <args>`` in a child process; wall time and peak RSS (the child and its reader)."""
    exe = shutil.which("simkeep", path=str(Path(sys.executable).parent)) or "simkeep"
    env = {**os.environ, "SIMKEEP_DATABASE_URL": database_url, "SIMKEEP_LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    child = subprocess.Popen([exe, *args], env=env, stdout=subprocess.PIPE)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"simkeep {' '.join(args)} exited with {child.returncode}: {out.decode()[:2000]}")
    return Run(seconds, usage.ru_maxrss / 1024, json.loads(out))


def settle(engine: Engine) -> None:
    """On PostgreSQL, a checkpoint before the measured run: what earlier runs (or other work on the server)
    left unwritten is written now, not by the server's checkpointer in the middle of the run. It needs a
    superuser or the ``pg_checkpoint`` role; without either the run starts as it is."""
    if engine.dialect.name != "postgresql":
        return
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
    except Exception as exc:  # a benchmark runs on without it
        print(f"no checkpoint before the run ({type(exc).__name__})")


def postgres_available() -> bool:
    """Whether the benchmark PostgreSQL server answers."""
    try:
        engine = make_engine(POSTGRES_URL, pool_size=1)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        print(f"PostgreSQL at {POSTGRES_URL} not available ({type(exc).__name__}); skipping it")
        return False
    return True


def main(
    name: str,
    unit: str,
    write_csv: Callable[[Path, int, argparse.Namespace], None],
    command: list[str],
    prepare: Callable[[Engine], None] | None = None,
) -> None:
    """Generate the file, import it on each backend, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the generated file")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument(
        "--beside-a-server",
        action="store_true",
        help="keep a connection open during the run, as a running server does (on SQLite a first load of "
        "lines then writes through the WAL, not a rollback journal)",
    )
    if name == "sims_import":
        parser.add_argument("--no-secrets", action="store_true", help="leave out the SIMs' secret columns")
    options = parser.parse_args()
    report()
    results: list[str] = []
    with tempfile.TemporaryDirectory(prefix="simkeep-bench-") as tmp:
        workdir = Path(tmp)
        csv_path = workdir / f"{name}.csv"
        started = time.perf_counter()
        write_csv(csv_path, options.rows, options)
        os.sync()  # the file's write-back would otherwise compete with the first import for the disk
        size_mb = csv_path.stat().st_size / 1e6
        print(f"generated {options.rows:,} rows ({size_mb:.0f} MB) in {time.perf_counter() - started:.1f} s")
        for backend in options.backends.split(","):
            if backend == "postgres" and not postgres_available():
                continue
            with fresh_database(backend, workdir) as (url, engine):
                if prepare is not None:
                    prepare(engine)
                settle(engine)
                engine.dispose()  # the command alone on the database, as an operator runs it
                with ExitStack() as server:
                    if options.beside_a_server and backend == "sqlite":  # a server's idle connection
                        idle = server.enter_context(closing(sqlite3.connect(str(engine.url.database))))
                        idle.execute("SELECT count(*) FROM plans").fetchone()
                    run = run_cli([*command, str(csv_path), "--json"], url)
            os.sync()  # what this run wrote would otherwise be written back during the next backend's run
            imported = int(str(run.output["imported"]))
            if imported != options.rows:
                sys.exit(f"{backend}: imported {imported} of {options.rows}: {run.output}")
            rate = options.rows / run.seconds
            print(f"{backend}: {options.rows:,} {unit} in {run.seconds:.2f} s = {rate:,.0f} {unit}/s")
            print(f"{backend}: peak memory {run.peak_rss_mb:.0f} MB (import process and its reader)")
            results.append(f"RESULT {name}_{backend} {rate:.0f} {unit}/s")
    for line in results:
        print(line)


def add_stores(engine: Engine) -> None:
    """The stores the generated file names."""
    with engine.begin() as conn:
        for code in STORES:
            conn.execute(
                text(
                    "INSERT INTO stores (code, name, region, address, created_at) "
                    "VALUES (:code, :code, 'bench', '', CURRENT_TIMESTAMP)"
                ),
                {"code": code},
            )


if __name__ == "__main__":
    main("sims_import", "rows", write_sims_csv, ["sims", "import"], add_stores)
