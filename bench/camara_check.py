"""Benchmark the CAMARA SIM Swap check under load, beside a bare FastAPI baseline measured in the same run.

Run from the repository root: ``python bench/camara_check.py [--lines N] [--workers W] [--connections C]
[--duration S] [--backends sqlite,postgres]``. Needs ``wrk`` (Debian package ``wrk``; ``scripts/system-deps
--test`` installs it). For each backend it makes a freshly migrated database (a temporary SQLite file; a new
schema in SIMKEEP_BENCH_POSTGRES_URL, dropped afterwards) with N lines (default 1,000,000; every tenth has a
SIM change in the last 2,000 hours), registers a relying party, and starts ``simkeep serve --workers W``
(default 2) as an operator would. It takes a token from ``POST /oauth2/token`` and then drives authenticated
``POST /sim-swap/v2/check`` calls with wrk from loopback: C connections (default 64), a Lua script drawing a
random number of the N for each request (1 in 10 unknown: 404). A short warm-up run comes first; the
measured run's requests/s and 99th percentile latency are reported, and the run is refused if any answer
was other than 200 or 404. The baseline is a bare FastAPI app (one POST route answering a dict lookup)
served by uvicorn with the same workers and driven by the same script.

Then, unless ``--paced-delay-ms 0``, as many paced rounds of simkeep alone: each connection sends its next
check 1 ms after its last answer (with 64 connections about 25,000 checks/s, depending on the latency),
which measures the latency at the issue's rate rather than at full saturation (wrk's own latency, from
each request's sending; requests a stalled server kept from being sent are not counted, so the full-speed
p99 stays the stricter figure).

The last lines are ``RESULT camara_check_rps_<backend> <req/s> req/s``, ``RESULT camara_check_p99_ms_<backend>
<ms> ms``, ``RESULT camara_check_cpu_us_<backend> <us>`` (CPU time of the server's processes per check, read
from /proc: it holds on a shared machine where requests/s does not; on PostgreSQL also the database
server's, all of its processes on the machine), ``RESULT camara_check_wrk_cpu_us_<backend> <us>`` (wrk's own
CPU time per check: the load generator uses the same cores), ``RESULT camara_check_paced_rps_<backend>`` and
``RESULT camara_check_paced_p99_ms_<backend>``, and ``RESULT fastapi_baseline_rps <req/s> req/s``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from _keepalive_data import database, drop, make_lines  # a sibling script: run from bench/ or the root
from simkeep.camara import clients
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.models import Sim, SimKind, SimLocation, SimStatus

SECRET = "bench-secret-key-0123456789abcdef0123456789"  # noqa: S105 - a throw-away benchmark key

LUA = r"""
local lines = %(lines)d
local token = "%(token)s"
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
request = function()
  local i = math.random(0, lines * 10 // 9)
  local body = string.format('{"phoneNumber":"+86130%%08d","maxAge":240}', i)
  return wrk.format("POST", "/sim-swap/v2/check",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
local codes = {}
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end
function done(summary, latency, requests)
  io.write(string.format("BENCH requests=%%d seconds=%%f p99_us=%%d p50_us=%%d errors=%%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(99), latency:percentile(50),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
      + summary.errors.timeout))
end
"""
# Lua 5.1 (LuaJIT, as wrk embeds) has no // operator.
LUA = LUA.replace("lines * 10 // 9", "math.floor(lines * 10 / 9)")
#: The paced load: each connection sends its next check this many ms after the last answer came back (wrk
#: calls ``delay()`` before every request), so the offered rate is about connections / (delay + latency).
PACED = """
function delay()
  return %(delay)d
end
"""

BASELINE = '''
"""A bare FastAPI app: one POST route answering from a dict (the baseline of bench/camara_check.py)."""
from typing import Any

from fastapi import FastAPI, Request

app = FastAPI()
SWAPPED = {f"+86130{i:08d}": i %% 10 == 0 for i in range(%(lines)d)}


@app.post("/sim-swap/v2/check")
async def check(request: Request) -> Any:
    body = await request.json()
    return {"swapped": SWAPPED.get(body.get("phoneNumber"), False)}
'''


@dataclass(frozen=True)
class Load:
    """What wrk measured."""

    rps: float
    p99_ms: float
    p50_ms: float
    non_2xx: int
    #: CPU time per request, in microseconds, of the server's processes and of all PostgreSQL server
    #: processes on the machine: unlike requests/s, these hold when something else shares the machine.
    cpu_us: float = 0.0
    db_cpu_us: float = 0.0
    #: wrk's own CPU time per request (the load generator shares the machine's cores with the server).
    wrk_cpu_us: float = 0.0
    #: The lines a script's ``done()`` printed beyond the figures (bench/load_mixed.py: the checks its
    #: schedule skipped).
    notes: tuple[str, ...] = ()


def _cpu_seconds(pids: set[int]) -> float:
    """user + system CPU seconds of these processes so far (Linux /proc; vanished ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def process_table() -> dict[int, tuple[int, str, float]]:
    """Every process on the machine: pid -> (parent, name, CPU seconds of it and of its reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                head, tail = (entry / "stat").read_text().rsplit(")", 1)
            except OSError:
                continue
            fields = tail.split()  # from the state on: ppid [1], utime stime cutime cstime [11:15]
            cpu = sum(int(f) for f in fields[11:15]) / tick
            table[int(entry.name)] = (int(fields[1]), head.split("(", 1)[1], cpu)
    return table


def server_pids(root: int) -> tuple[set[int], set[int]]:
    """The server process with its descendants, and the PostgreSQL server processes on this machine."""
    table = process_table()
    tree = {root}
    grew = True
    while grew:
        found = {pid for pid, (parent, _, _) in table.items() if parent in tree} - tree
        tree |= found
        grew = bool(found)
    return tree, {pid for pid, (_, name, _) in table.items() if name.startswith("postgres")}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_sim_changes(engine: Engine) -> None:
    """Every tenth line moved to a new SIM 1 to 2,000 hours ago (one stock SIM stands in for all)."""
    with Session(engine) as session:
        sim = Sim(
            iccid="8986019999999999990",
            imsi="001019999999999",
            kind=SimKind.PHYSICAL,
            status=SimStatus.ACTIVE,
            location=SimLocation.WAREHOUSE,
        )
        session.add(sim)
        session.commit()
        sim_id = sim.id
    now = utcnow()
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            b = now.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
            conn.execute(
                text(
                    "INSERT INTO sim_changes (line_id, new_sim_id, changed_at, channel) "
                    "SELECT id, :sim, datetime(:b, '-' || (1 + id % 2000) || ' hours') || '.000000', 'store' "
                    "FROM lines WHERE id % 10 = 0"
                ),
                {"sim": sim_id, "b": b},
            )
        else:
            conn.execute(
                text(
                    "INSERT INTO sim_changes (line_id, new_sim_id, changed_at, channel) "
                    "SELECT id, :sim, CAST(:b AS timestamptz) - (1 + id % 2000) * interval '1 hour', 'store' "
                    "FROM lines WHERE id % 10 = 0"
                ),
                {"sim": sim_id, "b": now},
            )
    # Settle the tables as a database in service would be (autovacuum would otherwise work through the
    # fresh million rows during the first measured round): VACUUM outside a transaction on PostgreSQL.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE"))
        if conn.dialect.name == "postgresql":  # and the checkpoint the bulk load is due, before measuring
            conn.execute(text("CHECKPOINT"))


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Until the server answers (or fail with its log)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            httpx.get(url + "/", timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        return
    sys.exit("the server did not start within 120 s")


def wait_facts(url: str, *, workers: int) -> float:
    """Until every worker answers checks from its copy of the lines' facts (``/healthz`` says
    ``camaraFacts: ready``), which each loads in the background after it starts; until then a worker reads
    the database per check (a start-up transient, not the steady state measured). Each probe is a new
    connection, which the kernel hands to any worker: 20 ready answers in a row per worker are taken as all.
    Returns the seconds waited."""
    started = time.monotonic()
    ready_in_a_row = 0
    while ready_in_a_row < 20 * workers:
        if time.monotonic() - started > 300:
            sys.exit("the workers' facts copies were not ready within 300 s")
        state = httpx.get(url + "/healthz", timeout=5).json().get("camaraFacts")
        if state == "ready":
            ready_in_a_row += 1
        elif state == "off":
            break
        else:
            ready_in_a_row = 0
            time.sleep(0.2)
    return time.monotonic() - started


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server and its workers."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_wrk(url: str, script: Path, *, connections: int, duration: int, threads: int) -> Load:
    """One wrk run; its figures."""
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk alone: the servers are still running
    wrk_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    found = re.search(r"BENCH requests=(\d+) seconds=([\d.]+) p99_us=(\d+) p50_us=(\d+) errors=(\d+)", out)
    if found is None:
        sys.exit(f"wrk printed no figures:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests, seconds = int(found.group(1)), float(found.group(2))
    return Load(
        rps=requests / seconds,
        p99_ms=int(found.group(3)) / 1000,
        p50_ms=int(found.group(4)) / 1000,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        wrk_cpu_us=wrk_cpu / max(1, requests) * 1e6,
        notes=tuple(line for line in out.splitlines() if line.startswith("SKIPPED ")),
    )


def rounds(
    targets: list[tuple[str, Path]], options: Any, cpu_of: list[int | None] | None = None
) -> list[list[Load]]:
    """Warm each target up, then load them in turn, ``--rounds`` times: the machine may be shared, so each
    figure is measured next to the others rather than minutes apart."""
    for url, script in targets:
        run_wrk(url, script, connections=options.connections, duration=3, threads=options.threads)
    runs: list[list[Load]] = [[] for _ in targets]
    for _ in range(options.rounds):
        for i, (url, script) in enumerate(targets):
            root = cpu_of[i] if cpu_of else None
            mine, db = server_pids(root) if root else (set(), set())
            before = _cpu_seconds(mine), _cpu_seconds(db)
            load = run_wrk(
                url,
                script,
                connections=options.connections,
                duration=options.duration,
                threads=options.threads,
            )
            if root:
                requests = max(1.0, load.rps * options.duration)
                load = dataclasses.replace(
                    load,
                    cpu_us=(_cpu_seconds(mine) - before[0]) / requests * 1e6,
                    db_cpu_us=(_cpu_seconds(db) - before[1]) / requests * 1e6,
                )
            runs[i].append(load)
    return runs


def profile(pid: int, backend: str, options: Any) -> subprocess.Popen[bytes]:
    """py-spy sampling the server's workers through the first rounds (``--profile FILE``: FILE.<backend>
    gets collapsed stacks, one per line with its sample count; py-spy is not a dependency)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    seconds = str(3 + options.duration)
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--subprocesses", "--duration", seconds, "--format", "raw",
         "--output", f"{options.profile}.{backend}", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def median_load(runs: list[Load]) -> Load:
    """The median of each figure over the rounds."""
    return Load(
        rps=statistics.median(r.rps for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        non_2xx=sum(r.non_2xx for r in runs),
        cpu_us=statistics.median(r.cpu_us for r in runs),
        db_cpu_us=statistics.median(r.db_cpu_us for r in runs),
        wrk_cpu_us=statistics.median(r.wrk_cpu_us for r in runs),
    )


def bench_backend(
    backend: str, options: Any, workdir: Path, baseline: tuple[str, Path]
) -> tuple[Load, Load, Load | None]:
    """simkeep serve on a fresh database of N lines, loaded with wrk in turns with the baseline; the
    median figures of each."""
    started = time.perf_counter()
    engine, url = database(backend)
    try:
        make_lines(engine, options.lines, utcnow())
        add_sim_changes(engine)
        settings = Settings(environment="development", secret_key=SECRET, database_url=url)
        with Session(engine) as session:
            issued = clients.create_client(
                session,
                settings,
                name="Bench bank",
                scopes=["sim-swap:check"],
                requests_per_second=10_000_000,
                daily_quota=2_000_000_000,
            )
            session.commit()
            client_id, secret = issued.client.client_id, issued.secret
        print(f"{backend}: {options.lines} lines ready in {time.perf_counter() - started:.1f} s", flush=True)
        port = free_port()
        log = workdir / f"serve-{backend}.log"
        env = {
            **os.environ,
            "SIMKEEP_ENVIRONMENT": "development",
            "SIMKEEP_SECRET_KEY": SECRET,
            "SIMKEEP_DATABASE_URL": url,
            "SIMKEEP_LOG_LEVEL": "WARNING",
        }
        with log.open("wb") as out:
            simkeep = str(Path(sys.executable).parent / "simkeep")
            process = subprocess.Popen(
                [simkeep, "serve", "--port", str(port), "--workers", str(options.workers), "--no-upgrade"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(process, base, log)
            waited = wait_facts(base, workers=options.workers)
            print(f"{backend}: facts copies ready {waited:.1f} s after the server answered", flush=True)
            form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
            token = httpx.post(base + "/oauth2/token", data=form, timeout=120).json()["access_token"]
            script = workdir / f"check-{backend}.lua"
            script.write_text(LUA % {"lines": options.lines, "token": token})
            spy = profile(process.pid, backend, options) if options.profile else None
            targets = [(base + "/sim-swap/v2/check", script), baseline]
            simkeep_runs, baseline_runs = rounds(targets, options, [process.pid, None])
            if spy is not None:
                spy.wait()
            paced: list[Load] = []
            if options.paced_delay_ms > 0:
                paced_script = workdir / f"paced-{backend}.lua"
                paced_script.write_text(script.read_text() + PACED % {"delay": options.paced_delay_ms})
                (paced,) = rounds([(base + "/sim-swap/v2/check", paced_script)], options, [process.pid])
        finally:
            stop(process)  # the workers write their query log as they stop
        answers = _answers(url)
        print(f"{backend}: answers by status {answers} (404: the unknown numbers drawn)", flush=True)
        if set(answers) - {200, 404}:
            sys.exit(f"{backend}: some checks were refused or failed: {answers}")
        for i, (mine, bare) in enumerate(zip(simkeep_runs, baseline_runs, strict=True)):
            print(
                f"{backend} round {i + 1}: simkeep {mine.rps:.0f} req/s (p99 {mine.p99_ms:.1f} ms, "
                f"CPU per request: server {mine.cpu_us:.1f} us, PostgreSQL {mine.db_cpu_us:.1f} us, "
                f"wrk {mine.wrk_cpu_us:.1f} us), "
                f"baseline {bare.rps:.0f} req/s (p99 {bare.p99_ms:.1f} ms)",
                flush=True,
            )
        for i, load in enumerate(paced):
            print(
                f"{backend} paced round {i + 1}: {load.rps:.0f} req/s, p50 {load.p50_ms:.2f} ms, "
                f"p99 {load.p99_ms:.1f} ms",
                flush=True,
            )
        return median_load(simkeep_runs), median_load(baseline_runs), median_load(paced) if paced else None
    finally:
        drop(engine, backend)


def _answers(url: str) -> dict[int, int]:
    """The statuses in the query log (to tell expected 404s from refusals), unpacked in the database."""
    from simkeep.db.engine import make_engine

    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        status, entries = "CAST(e->>3 AS integer)", "json_array_elements(CAST(b.entries AS json)) AS e"
    else:
        status, entries = "json_extract(e.value, '$[3]')", "json_each(b.entries) AS e"
    sql = f"SELECT {status}, count(*) FROM api_query_batches AS b, {entries} GROUP BY 1"
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(sql)).all()
        return {int(status): int(n) for status, n in rows}
    finally:
        engine.dispose()


@contextmanager
def baseline_server(options: Any, workdir: Path) -> Iterator[tuple[str, Path]]:
    """The bare FastAPI app with the same workers, running for the whole benchmark: (URL, wrk script)."""
    (workdir / "baseline_app.py").write_text(BASELINE % {"lines": options.lines})
    port = free_port()
    log = workdir / "baseline.log"
    with log.open("wb") as out:
        uvicorn = [sys.executable, "-m", "uvicorn", "baseline_app:app", "--app-dir", str(workdir)]
        process = subprocess.Popen(
            [*uvicorn, "--port", str(port), "--workers", str(options.workers), "--log-level", "warning",
             "--no-access-log"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, base, log)
        script = workdir / "check-baseline.lua"
        script.write_text(LUA % {"lines": options.lines, "token": "none"})
        yield base + "/sim-swap/v2/check", script
    finally:
        stop(process)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs of each server, taken in turns")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--paced-delay-ms",
        type=int,
        default=1,
        help="after the full-speed rounds, as many paced rounds: each connection waits this long after an "
        "answer before its next check (64 connections, 1 ms: about 25,000 checks/s); 0 skips them",
    )
    parser.add_argument("--profile", help="py-spy's collapsed stacks of the served workers to this file")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (or scripts/system-deps --test)")
    results: list[str] = []
    baselines: list[Load] = []
    with tempfile.TemporaryDirectory(prefix="simkeep-bench-camara-") as tmp:
        workdir = Path(tmp)
        with baseline_server(options, workdir) as baseline:
            for backend in [b.strip() for b in options.backends.split(",") if b.strip()]:
                load, bare, paced = bench_backend(backend, options, workdir, baseline)
                baselines.append(bare)
                print(
                    f"{backend}: {load.rps:.0f} req/s, p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms; "
                    f"baseline beside it {bare.rps:.0f} req/s (ratio {load.rps / bare.rps:.2f})",
                    flush=True,
                )
                results.append(f"RESULT camara_check_rps_{backend} {load.rps:.0f} req/s")
                results.append(f"RESULT camara_check_p99_ms_{backend} {load.p99_ms:.2f} ms")
                results.append(f"RESULT camara_check_cpu_us_{backend} {load.cpu_us:.1f} us a check")
                results.append(f"RESULT camara_check_wrk_cpu_us_{backend} {load.wrk_cpu_us:.1f} us a check")
                if backend == "postgres":
                    results.append(f"RESULT camara_check_db_cpu_us_{backend} {load.db_cpu_us:.1f} us a check")
                if paced is not None:
                    results.append(f"RESULT camara_check_paced_rps_{backend} {paced.rps:.0f} req/s")
                    results.append(f"RESULT camara_check_paced_p99_ms_{backend} {paced.p99_ms:.2f} ms")
        results.append(f"RESULT fastapi_baseline_rps {statistics.median(b.rps for b in baselines):.0f} req/s")
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
