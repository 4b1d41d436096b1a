"""What one store replacement costs the server: CPU time per flow, with nothing else running.

Run from the repository root: ``python bench/replacement_cost.py [--flows N] [--backends sqlite,postgres]
[--concurrency C] [--request-threads T] [--request-sessions R]``.
For each backend it makes a fresh database (a temporary SQLite file; a new schema in
SIMKEEP_BENCH_POSTGRES_URL) with a store, its clerk and N + 20 holders each with a store SIM waiting, starts
``simkeep serve --workers 1`` as an operator would, and runs the flow of ``bench/load_mixed.py`` (submit with
the in-person check, cash payment, the scanned SIM, activation: four requests) for each holder in turn, one
after another (or C clerk clients at once, each with flows of its own: what the server's CPU per flow becomes
when many are in progress together, as in ``bench/load_mixed.py`` when it falls behind; the server's request
threads and request sessions as T and R, else their defaults). The first 20 flows warm the server up; over
the other N it reads the CPU time of the server's processes from /proc (on PostgreSQL also that of every
PostgreSQL server process on the machine, its backends that came and went included).

This is the figure that decides how many replacements a second fit beside the CAMARA checks in
``bench/load_mixed.py`` on a given machine; unlike a latency under load it holds when something else
shares the machine. The last lines are ``RESULT replacement_cpu_ms_<backend> <ms> ms`` (server CPU per
flow; on PostgreSQL the database server's included, and on its own as
``RESULT replacement_db_cpu_ms_postgres``), ``RESULT replacement_client_cpu_ms_<backend> <ms> ms`` (the
CPU of the clerk's HTTP client in this process, per flow: in ``bench/load_mixed.py`` it shares the machine's
cores too) and ``RESULT replacement_wall_ms_<backend> <ms> ms``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the data factories live in tests/

from sqlalchemy.orm import Session  # noqa: E402

from _keepalive_data import database, drop  # noqa: E402  (sibling scripts)
from camara_check import SECRET, free_port, stop, wait_ready  # noqa: E402
from load_mixed import Counter, cpu_by_role, seed_flows, service_env  # noqa: E402
from simkeep.config import Settings  # noqa: E402

WARM_UP = 20


def bench_backend(
    backend: str,
    flows: int,
    workdir: Path,
    *,
    concurrency: int = 1,
    request_threads: int | None = None,
    request_sessions: int | None = None,
) -> list[str]:
    """One backend's run; its RESULT lines."""
    engine, url = database(backend)
    try:
        settings = Settings(environment="development", secret_key=SECRET, database_url=url)
        with Session(engine) as session:
            clerk, pairs = seed_flows(session, settings, flows + WARM_UP)
        env = service_env(url, request_threads, request_sessions)
        simkeep = str(Path(sys.executable).parent / "simkeep")
        base = f"http://127.0.0.1:{free_port()}"
        log = workdir / f"serve-{backend}.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [simkeep, "serve", "--port", base.rsplit(":", 1)[1], "--workers", "1", "--no-upgrade"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_ready(server, base, log)
            counter = Counter.signed_in(base, clerk)

            def one_by_one(batch: list[tuple[str, str]]) -> None:
                for msisdn, iccid in batch:
                    _, error = counter.flow(msisdn, iccid)
                    if error is not None:
                        raise SystemExit(f"{backend}: a flow failed: {error}")

            def run(batch: list[tuple[str, str]]) -> None:
                with ThreadPoolExecutor(max_workers=concurrency) as clients:
                    list(clients.map(one_by_one, [batch[i::concurrency] for i in range(concurrency)]))

            run(pairs[:WARM_UP])
            before = cpu_by_role({"server": server.pid})  # PostgreSQL's backends that come and go counted
            began, client = time.perf_counter(), time.process_time()
            run(pairs[WARM_UP:])
            wall, client = time.perf_counter() - began, time.process_time() - client
            after = cpu_by_role({"server": server.pid})
            postgres = backend == "postgres"
            db_cpu = after.get("PostgreSQL", 0.0) - before.get("PostgreSQL", 0.0) if postgres else 0.0
            cpu = after["server"] - before["server"] + db_cpu
        finally:
            stop(server)
        cpu_ms, wall_ms, client_ms = cpu / flows * 1000, wall / flows * 1000, client / flows * 1000
        db_ms = db_cpu / flows * 1000
        share = f" (PostgreSQL's {db_ms:.1f} ms of it)" if postgres else ""
        how = "one after another" if concurrency == 1 else f"by {concurrency} clerks at once"
        print(f"{backend}: {flows} store replacements {how}: {wall_ms:.1f} ms each, "
              f"server CPU {cpu_ms:.1f} ms each{share}, the clerk's HTTP client {client_ms:.1f} ms each",
              flush=True)  # fmt: skip
        return [
            f"RESULT replacement_cpu_ms_{backend} {cpu_ms:.1f} ms",
            *([f"RESULT replacement_db_cpu_ms_postgres {db_ms:.1f} ms"] if postgres else []),
            f"RESULT replacement_client_cpu_ms_{backend} {client_ms:.1f} ms",
            f"RESULT replacement_wall_ms_{backend} {wall_ms:.1f} ms",
        ]
    finally:
        drop(engine, backend)


def main() -> None:
    """Measure each backend and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--concurrency", type=int, default=1, help="clerk clients at once")
    parser.add_argument("--request-threads", type=int, help="the server's SIMKEEP_REQUEST_THREADS")
    parser.add_argument("--request-sessions", type=int, help="the server's SIMKEEP_REQUEST_SESSIONS")
    options = parser.parse_args()
    results: list[str] = []
    with tempfile.TemporaryDirectory(prefix="simkeep-bench-replacement-") as tmp:
        for backend in [b.strip() for b in options.backends.split(",") if b.strip()]:
            results += bench_backend(
                backend,
                options.flows,
                Path(tmp),
                concurrency=options.concurrency,
                request_threads=options.request_threads,
                request_sessions=options.request_sessions,
            )
    print("\n".join(results))


if __name__ == "__main__":
    main()
