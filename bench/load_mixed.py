"""Load: CAMARA SIM Swap checks at a rate while store replacements run through the API (issue 9 item 5).

Run from the repository root: ``python bench/load_mixed.py [--lines N] [--flows-per-second F] [--duration S]
[--workers W] [--check-workers C] [--backends postgres,sqlite] [--check-rate R | --check-delay-ms D]``. For
each backend it makes a fresh database with N lines (default 200,000) for the checks, plus one store, a clerk,
and enough holders and store SIMs for ``F * S`` replacement flows (defaults 20 per second for 60 s); runs
``simkeep worker --exit-when-idle`` once, so that the day's scheduled jobs (the daily sweep over the N lines,
its reminders and recyclings, their messages) are done, as they are during a working day; starts ``simkeep
serve --workers W`` and ``simkeep worker`` as an operator would, and, for the checks, a second ``simkeep
serve`` with C workers (default 1), as docs/deployment.md tells an operator whose relying parties' traffic is
heavy to run the CAMARA API (the first one keeps no facts copy; W defaults to 1, the deployment guide's advice
on two cores; ``--check-workers 0``: one ``simkeep serve`` answers both loads on its W workers, default 2);
then, for S seconds, wrk drives ``POST /sim-swap/v2/check`` with 64 connections on a schedule of R checks a
second (default 20,000, the issue's rate, whatever the latency: see ``PACED_RATE``; a wrk thread more than
100 ms behind its schedule starts it again from the present, so the checks a slow server did not take in time
are never sent and the figure counts only those answered;
``--check-rate 0``: as fast as the server answers; the older ``--check-delay-ms D`` has each connection wait D
ms after an answer instead, which offers less as the latency grows), while a pool of clerk clients starts F
store replacements a second (submit with the in-person check, cash payment, the scanned SIM, activation: four
requests). Face matching is not part of a store flow. It checks that every check answered 200 or 404 (wrk's
errors and non-2xx counts: 404 is the unknown numbers drawn), that every flow ended activated, and prints:

``RESULT load_camara_rps_<backend>``, ``RESULT load_camara_p99_ms_<backend>``, ``RESULT
load_camara_errors_<backend>``, ``RESULT load_flows_per_s_<backend>``, ``RESULT load_flow_p99_s_<backend>``
and ``RESULT load_flow_errors_<backend>``. Targets (issue 9): 20,000 checks/s, p99 under 20 ms, zero errors,
replacement p99 under 2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the data factories live in tests/

import httpx  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from tests import factories  # noqa: E402

from _keepalive_data import database, drop, make_lines  # noqa: E402  (sibling scripts)
from _machine import report  # noqa: E402
from camara_check import (  # noqa: E402
    LUA,
    SECRET,
    Load,
    _answers,
    add_sim_changes,
    free_port,
    run_wrk,
    stop,
    wait_facts,
    wait_ready,
)
from simkeep.camara import clients  # noqa: E402

#: Checks at a rate: before each request wrk asks ``delay()`` for a wait in whole milliseconds; a mean of,
#: say, 2.4 ms is a wait of 3 ms four times in ten and 2 ms otherwise. With 64 connections the offered rate
#: is about 64 / (mean delay + latency); the measured rate is what the results report.
PACED_MEAN = """
local mean = %(delay)f
function delay()
  local low = math.floor(mean)
  if math.random() < mean - low then
    return low + 1
  end
  return low
end
"""
#: Checks on a schedule (the default): each wrk thread hands out send times ``period`` ms apart, one per
#: request, and ``delay()`` waits (in whole milliseconds, as wrk takes it) until the request's time comes.
#: The offered rate is the issue's, whatever the latency, as long as a connection is free (64 of them); a
#: server that falls behind gets the next requests at once, and a backlog older than 100 ms is dropped
#: rather than sent in a burst. The clock is CLOCK_MONOTONIC through LuaJIT's FFI (wrk embeds LuaJIT).
PACED_RATE = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } simkeep_timespec;
int clock_gettime(int clk_id, simkeep_timespec *tp);
]]
local clock = ffi.new("simkeep_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1000000
end
local period = %(period)f
local due = nil
function delay()
  local now = now_ms()
  if due == nil or due < now - 100 then
    due = now
  end
  local wait = due - now
  due = due + period
  if wait < 1 then
    return 0
  end
  return math.floor(wait)
end
"""
WRK_THREADS = 2
from simkeep.config import Settings  # noqa: E402
from simkeep.db.base import utcnow  # noqa: E402
from simkeep.models import StaffRole  # noqa: E402


def seed_flows(session: Session, settings: Settings, flows: int) -> tuple[str, list[tuple[str, str]]]:
    """A store, its clerk, and ``flows`` holders each with a store SIM waiting: (clerk, [(msisdn, iccid)])."""
    store = factories.store(session)
    clerk = factories.staff(session, StaffRole.CLERK, store_row=store)
    pairs = []
    for _ in range(flows):
        holder = factories.holder(session, settings)
        sim = factories.sim(session, store=store)
        pairs.append((holder.msisdn, sim.iccid))
    session.commit()
    return clerk.username, pairs


class Counter:
    """One clerk client: a store replacement, start to finish, timed."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.base = base
        self.headers = headers
        self.local = threading.local()

    @classmethod
    def signed_in(cls, base: str, clerk: str) -> Counter:
        """A clerk client signed in to the server at ``base``."""
        staff = httpx.post(
            base + "/api/v1/auth/staff/token",
            json={"username": clerk, "password": factories.STAFF_PASSWORD},
            timeout=120,
        ).json()["access_token"]
        return cls(base, {"Authorization": f"Bearer {staff}"})

    def _client(self) -> httpx.Client:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(base_url=self.base, headers=self.headers, timeout=30)
        return client

    def flow(self, msisdn: str, iccid: str) -> tuple[float, str | None]:
        """The flow's duration and its error (None when it ended activated); a request that got no answer
        within the client's timeout (30 s) is an error of the flow, not of the benchmark."""
        started = time.perf_counter()
        try:
            return self._flow(msisdn, iccid, started)
        except httpx.HTTPError as exc:
            return time.perf_counter() - started, f"no answer: {type(exc).__name__}"

    def _flow(self, msisdn: str, iccid: str, started: float) -> tuple[float, str | None]:
        c = self._client()
        body = {"msisdn": msisdn, "channel": "store", "in_person_document_number": factories.DOCUMENT}
        r = c.post("/api/v1/replacements", json=body)
        if r.status_code != 201:
            return time.perf_counter() - started, f"submit {r.status_code} {r.text[:200]}"
        ref = r.json()["reference"]
        for path, step in ((f"/api/v1/replacements/{ref}/payment", {"method": "cash"}),
                           (f"/api/v1/replacements/{ref}/sim", {"iccid": iccid}),
                           (f"/api/v1/replacements/{ref}/activation", {})):  # fmt: skip
            r = c.post(path, json=step)
            if r.status_code != 200:
                return time.perf_counter() - started, f"{path} {r.status_code} {r.text[:200]}"
        state = r.json()["state"]
        return time.perf_counter() - started, None if state == "activated" else f"ended {state}"


def run_flows(counter: Counter, pairs: list[tuple[str, str]], rate: float) -> list[tuple[float, str | None]]:
    """Start ``rate`` flows a second (as long as ``pairs`` lasts), each in the pool; their outcomes."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        started = time.perf_counter()
        futures = []
        for i, (msisdn, iccid) in enumerate(pairs):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(counter.flow, msisdn, iccid))
        return [f.result() for f in futures]


def start_service(
    env: dict[str, str], workers: int, workdir: Path, backend: str, *, name: str = "serve", jobs: bool = True
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes] | None, str]:
    """``simkeep serve`` (and, with ``jobs``, ``simkeep worker``), as an operator starts them: (server,
    worker, base URL)."""
    simkeep = str(Path(sys.executable).parent / "simkeep")
    port = free_port()
    with (workdir / f"{name}-{backend}.log").open("wb") as out:
        server = subprocess.Popen(
            [simkeep, "serve", "--port", str(port), "--workers", str(workers), "--no-upgrade"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    worker = None
    if jobs:
        with (workdir / f"worker-{backend}.log").open("wb") as out:
            worker = subprocess.Popen([simkeep, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
    return server, worker, f"http://127.0.0.1:{port}"


def start_services(
    env: dict[str, str], options: argparse.Namespace, workdir: Path, backend: str
) -> tuple[list[subprocess.Popen[bytes]], str, str, int]:
    """The servers and the worker, ready: (processes, base URL of the staff API, of the checks, the checks'
    worker processes). With ``--check-workers``, the CAMARA API has a ``simkeep serve`` of its own (as
    behind a gateway that sends the relying parties' host there) and the other one keeps no facts copy."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if options.check_workers:
            staff_env = {**env, "SIMKEEP_CAMARA_FACTS_CACHE": "false"}
            server, worker, base = start_service(staff_env, options.workers, workdir, backend)
            camara, _, check_base = start_service(
                env, options.check_workers, workdir, backend, name="camara", jobs=False
            )
            processes += [server, camara]
            wait_ready(camara, check_base, workdir / f"camara-{backend}.log")
        else:
            server, worker, base = start_service(env, options.workers, workdir, backend)
            processes.append(server)
            check_base = base
        if worker is not None:
            processes.append(worker)
        wait_ready(server, base, workdir / f"serve-{backend}.log")
    except BaseException:
        for process in processes:
            stop(process)
        raise
    return processes, base, check_base, options.check_workers or options.workers


def topology(options: argparse.Namespace) -> str:
    """Which processes answer which load, as the run's output says it."""
    if options.check_workers:
        return (
            f"the checks on a `simkeep serve --workers {options.check_workers}` of their own, "
            f"the replacements on a `simkeep serve --workers {options.workers}`"
        )
    return f"the checks and the replacements on one `simkeep serve --workers {options.workers}`"


def service_env(url: str) -> dict[str, str]:
    """The environment ``simkeep serve`` and ``simkeep worker`` run with on the benchmark's database."""
    return {
        **os.environ,
        "SIMKEEP_ENVIRONMENT": "development",
        "SIMKEEP_SECRET_KEY": SECRET,
        "SIMKEEP_DATABASE_URL": url,
        "SIMKEEP_LOG_LEVEL": "WARNING",
        "SIMKEEP_OTP_TRANSPORT": "null",
    }


def settle(env: dict[str, str], workdir: Path, backend: str) -> None:
    """Bring the database to a working day's steady state before the load: the day's scheduled jobs done
    (the daily sweep, with the reminders and recyclings due today among the lines, and their messages
    sent), as ``simkeep worker --exit-when-idle`` leaves it. Otherwise the worker started beside the load
    would run the day's sweep over every line during the measurement."""
    simkeep = str(Path(sys.executable).parent / "simkeep")
    started = time.perf_counter()
    with (workdir / f"settle-{backend}.log").open("wb") as out:
        subprocess.run([simkeep, "worker", "--exit-when-idle"], env=env, stdout=out, stderr=subprocess.STDOUT,
                       check=True)  # fmt: skip
    print(f"{backend}: the day's scheduled jobs done in {time.perf_counter() - started:.1f} s", flush=True)


def pacing(options: argparse.Namespace) -> str:
    """The wrk script's ``delay()`` for the options: a schedule, a wait after each answer, or none."""
    if options.check_delay_ms is not None:
        return PACED_MEAN % {"delay": options.check_delay_ms} if options.check_delay_ms > 0 else ""
    if options.check_rate > 0:
        return PACED_RATE % {"period": WRK_THREADS * 1000 / options.check_rate}
    return ""


def bench_backend(backend: str, options: argparse.Namespace, workdir: Path) -> list[str]:
    """One backend's run; its RESULT lines."""
    engine, url = database(backend)
    try:
        make_lines(engine, options.lines, utcnow())
        add_sim_changes(engine)
        settings = Settings(environment="development", secret_key=SECRET, database_url=url)
        flows = int(options.flows_per_second * options.duration)
        with Session(engine) as session:
            issued = clients.create_client(
                session, settings, name="Load bank", scopes=["sim-swap:check"],
                requests_per_second=10_000_000, daily_quota=2_000_000_000,
            )  # fmt: skip
            session.commit()
            client_id, secret = issued.client.client_id, issued.secret
            clerk, pairs = seed_flows(session, settings, flows)
        env = service_env(url)
        settle(env, workdir, backend)
        processes, base, check_base, check_workers = start_services(env, options, workdir, backend)
        try:
            waited = wait_facts(check_base, workers=check_workers)
            print(f"{backend}: facts copies ready {waited:.1f} s after the server answered", flush=True)
            print(f"{backend}: {topology(options)}", flush=True)
            form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
            token = httpx.post(check_base + "/oauth2/token", data=form, timeout=120).json()["access_token"]
            script = workdir / f"check-{backend}.lua"
            script.write_text(LUA % {"lines": options.lines, "token": token} + pacing(options))
            counter = Counter.signed_in(base, clerk)
            outcome: dict[str, Load] = {}

            def load_checks() -> None:
                target = check_base + "/sim-swap/v2/check"
                outcome["load"] = run_wrk(
                    target, script, connections=64, duration=options.duration, threads=WRK_THREADS
                )

            checks = threading.Thread(target=load_checks)
            checks.start()
            began = time.perf_counter()
            results = run_flows(counter, pairs, options.flows_per_second)
            flow_seconds = time.perf_counter() - began
            checks.join()
        finally:
            for process in processes:
                stop(process)
        load = outcome["load"]
        durations = sorted(d for d, _ in results)
        errors = [e for _, e in results if e is not None]
        p99 = statistics.quantiles(durations, n=100)[-1] if len(durations) >= 100 else durations[-1]
        answers = _answers(url)
        refused = sum(n for status, n in answers.items() if status not in (200, 404))
        print(
            f"{backend}: checks {load.rps:.0f} req/s, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms, "
            f"answers by status {answers} (404: the unknown numbers drawn); flows {len(results)} in "
            f"{flow_seconds:.1f} s, median {statistics.median(durations):.2f} s, p99 {p99:.2f} s, "
            f"{len(errors)} errors",
            flush=True,
        )
        for error in errors[:5]:
            print(f"  flow error: {error}")
        return [
            f"RESULT load_camara_rps_{backend} {load.rps:.0f} req/s",
            f"RESULT load_camara_p99_ms_{backend} {load.p99_ms:.1f} ms",
            f"RESULT load_camara_errors_{backend} {refused} errors",
            f"RESULT load_flows_per_s_{backend} {len(results) / flow_seconds:.1f} flows/s",
            f"RESULT load_flow_p99_s_{backend} {p99:.2f} s",
            f"RESULT load_flow_errors_{backend} {len(errors)} errors",
        ]
    finally:
        drop(engine, backend)


def main() -> None:
    """Run the load on each backend and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--flows-per-second", type=float, default=20.0)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes of the `simkeep serve` for the replacements (default: 1 beside a "
        "checks' server of its own, as docs/deployment.md advises on two cores; 2 when it serves both loads)",
    )
    parser.add_argument(
        "--check-workers",
        type=int,
        default=1,
        help="serve the CAMARA checks from a `simkeep serve` of their own with this many worker processes, "
        "as docs/deployment.md advises where the banks' traffic is heavy (0: the checks and the replacements "
        "share the --workers of one `simkeep serve`)",
    )
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument(
        "--check-rate",
        type=float,
        default=20_000,
        help="checks a second, sent on a schedule (the issue's 20,000; 0: as fast as the server answers)",
    )
    parser.add_argument(
        "--check-delay-ms",
        type=float,
        default=None,
        help="instead of --check-rate: each wrk connection waits this long (mean, ms) after an answer, so "
        "the rate falls as the latency grows (the benchmark's pacing until 2026-12-02; 0: as fast as the "
        "server answers)",
    )
    options = parser.parse_args()
    if options.workers is None:
        options.workers = 1 if options.check_workers else 2
    report()
    results: list[str] = []
    with tempfile.TemporaryDirectory(prefix="simkeep-bench-load-") as tmp:
        for backend in [b.strip() for b in options.backends.split(",") if b.strip()]:
            results += bench_backend(backend, options, Path(tmp))
    print("\n".join(results))


if __name__ == "__main__":
    main()
