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
on two cores; ``--check-workers 0``: one ``simkeep serve`` answers both loads on its W workers, default 2;
each server with 8 request threads and 2 requests holding a session at once, ``--request-threads`` and
``--request-sessions``);
then, after ``--warmup`` seconds (default 5) of the same load, whose figures are printed but not reported
(the servers' first requests fill their caches: a cold start cost about 17,600 checks in the first 3 s),
for S seconds, wrk drives ``POST /sim-swap/v2/check`` with 64 connections (``--connections``) on a schedule
of R checks a second (default 20,000, the issue's rate, whatever the latency: see ``PACED_RATE``; a wrk
thread more than 100 ms behind its schedule starts it again from the present, so the checks a slow server did
not take in time are never sent and the figure counts only those answered;
``--check-rate 0``: as fast as the server answers; the older ``--check-delay-ms D`` has each connection wait D
ms after an answer instead, which offers less as the latency grows), while a pool of clerk clients starts F
store replacements a second (submit with the in-person check, cash payment, the scanned SIM, activation: four
requests; each clerk thread keeps one HTTP connection, with the standard library's client, which costs the
shared cores less than httpx did). Face matching is not part of a store flow. It checks that every
check answered 200 or 404 (wrk's errors and non-2xx counts: 404 is the unknown numbers drawn), that every
flow ended activated, and prints, besides the figures: the flows' median and slowest duration by 10 s of
start time (a saturated server shows as a stretch of slow windows); where the machine's cores went during
the load, by process (each server, the worker, PostgreSQL, wrk, the clerk clients) and for the machine as a
whole; and, for each wrk thread, how many scheduled checks it dropped, more than 100 ms behind, and when.
Then:

``RESULT load_camara_rps_<backend>``, ``RESULT load_camara_p99_ms_<backend>``, ``RESULT
load_camara_errors_<backend>``, ``RESULT load_flows_per_s_<backend>``, ``RESULT load_flow_p99_s_<backend>``
and ``RESULT load_flow_errors_<backend>``. Targets (issue 9): 20,000 checks/s, p99 under 20 ms, zero errors,
replacement p99 under 2 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    process_table,
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
local began = nil
skipped = 0
gaps = ""
function delay()
  local now = now_ms()
  if due == nil then
    due, began = now, now
  elseif due < now - 100 then
    local lost = math.floor((now - due) / period)
    skipped = skipped + lost
    if #gaps < 2000 then
      gaps = gaps .. string.format(" %%.1f:%%d", (now - began) / 1000, lost)
    end
    due = now
  end
  local wait = due - now
  due = due + period
  if wait < 1 then
    return 0
  end
  return math.floor(wait)
end
local threads = {}
local setup_checks = setup
function setup(thread)
  setup_checks(thread)
  table.insert(threads, thread)
end
local done_checks = done
function done(summary, latency, requests)
  done_checks(summary, latency, requests)
  for i, thread in ipairs(threads) do
    io.write(string.format("SKIPPED thread=%%d checks=%%d at (s:checks)%%s\\n", i, thread:get("skipped"),
      thread:get("gaps")))
  end
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


#: A clerk client's connection idle this long is not used again: the server closes idle ones after 5 s.
IDLE_SECONDS = 2.0


class Counter:
    """One clerk client: a store replacement, start to finish, timed. Each thread keeps one HTTP/1.1
    connection (the standard library's client, which spends less CPU than httpx on the cores the servers
    use)."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        url = httpx.URL(base)
        self.host, self.port = url.host, url.port or 80
        self.headers = {**headers, "Content-Type": "application/json"}
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

    def _post(self, path: str, body: dict[str, str]) -> tuple[int, Any]:
        """POST a JSON body on this thread's connection: (status, the decoded answer or its text)."""
        connection = getattr(self.local, "connection", None)
        if connection is not None and time.monotonic() - self.local.used > IDLE_SECONDS:
            connection.close()  # the server may be closing it (uvicorn's keep-alive timeout, 5 s)
            connection = None
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request("POST", path, body=json.dumps(body), headers=self.headers)
            response = connection.getresponse()
            raw = response.read()
        except BaseException:
            connection.close()
            self.local.connection = None
            raise
        self.local.used = time.monotonic()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def flow(self, msisdn: str, iccid: str) -> tuple[float, str | None]:
        """The flow's duration and its error (None when it ended activated); a request that got no answer
        within the client's timeout (30 s) is an error of the flow, not of the benchmark."""
        started = time.perf_counter()
        try:
            return self._flow(msisdn, iccid, started)
        except (OSError, http.client.HTTPException) as exc:
            return time.perf_counter() - started, f"no answer: {type(exc).__name__}"

    def _flow(self, msisdn: str, iccid: str, started: float) -> tuple[float, str | None]:
        body = {"msisdn": msisdn, "channel": "store", "in_person_document_number": factories.DOCUMENT}
        status, answer = self._post("/api/v1/replacements", body)
        if status != 201:
            return time.perf_counter() - started, f"submit {status} {str(answer)[:200]}"
        ref = answer["reference"]
        for path, step in ((f"/api/v1/replacements/{ref}/payment", {"method": "cash"}),
                           (f"/api/v1/replacements/{ref}/sim", {"iccid": iccid}),
                           (f"/api/v1/replacements/{ref}/activation", {})):  # fmt: skip
            status, answer = self._post(path, step)
            if status != 200:
                return time.perf_counter() - started, f"{path} {status} {str(answer)[:200]}"
        state = answer["state"]
        return time.perf_counter() - started, None if state == "activated" else f"ended {state}"


def cpu_by_role(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each role's process tree (the process, its descendants alive, and those
    reaped), and of PostgreSQL's server processes on this machine (``PostgreSQL``)."""
    table = process_table()
    roots = dict(roots)
    for pid, (parent, name, _) in table.items():
        if name.startswith("postgres") and not table.get(parent, (0, ""))[1].startswith("postgres"):
            roots["PostgreSQL"] = pid  # the postmaster: its backends come and go during the load
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    totals: dict[str, float] = {}
    for role, root in roots.items():
        tree, total = [root], 0.0
        while tree:
            pid = tree.pop()
            total += table[pid][2] if pid in table else 0.0
            tree += children.get(pid, [])
        totals[role] = total
    return totals


def own_cpu() -> tuple[float, float]:
    """CPU seconds so far of this process (the clerk clients) and of its reaped children (wrk)."""
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, reaped.ru_utime + reaped.ru_stime


def machine_cpu() -> tuple[float, float]:
    """The machine's busy CPU seconds so far (every state but idle and I/O wait), and of those the time
    spent in software interrupts (mostly the kernel's networking: loopback TCP for every request)."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / tick, softirq / tick


class CpuMeter:
    """Where the machine's cores went during the load: each role's CPU over the window, in cores."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.before, self.own, self.began = cpu_by_role(roots), own_cpu(), time.perf_counter()
        self.machine = machine_cpu()
        self.cores: dict[str, float] = {}
        self.busy = self.softirq = self.window = 0.0

    def stop(self) -> None:
        """End the window (after wrk has exited, so that its CPU is counted)."""
        after, own, machine = cpu_by_role(self.roots), own_cpu(), machine_cpu()
        self.window = time.perf_counter() - self.began
        self.busy = (machine[0] - self.machine[0]) / self.window
        self.softirq = (machine[1] - self.machine[1]) / self.window
        self.cores = {role: (after[role] - self.before.get(role, 0.0)) / self.window for role in after}
        self.cores["wrk"] = (own[1] - self.own[1]) / self.window
        self.cores["the clerk clients (the benchmark's process)"] = (own[0] - self.own[0]) / self.window

    def __str__(self) -> str:
        return (
            f"CPU over the {self.window:.0f} s of load, in cores of the machine's {os.cpu_count()}: "
            + ", ".join(f"{role} {used:.2f}" for role, used in self.cores.items())
            + f"; {sum(self.cores.values()):.2f} in all. The machine as a whole: {self.busy:.2f} busy, of "
            f"which {self.softirq:.2f} in software interrupts (the kernel's networking)"
        )


def run_flows(
    counter: Counter, pairs: list[tuple[str, str]], rate: float, pool: ThreadPoolExecutor
) -> list[tuple[float, str | None]]:
    """Start ``rate`` flows a second (as long as ``pairs`` lasts), each in the pool; their outcomes."""
    started = time.perf_counter()
    futures = []
    for i, (msisdn, iccid) in enumerate(pairs):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        futures.append(pool.submit(counter.flow, msisdn, iccid))
    return [f.result() for f in futures]


def by_window(flows: list[tuple[float, str | None]], rate: float, seconds: int = 10) -> str:
    """The flows' median and slowest duration by when they started, ``seconds`` at a time (a saturated
    replacements' server shows as a stretch of slow windows)."""
    size = max(1, int(rate * seconds))
    windows = []
    for start in range(0, len(flows), size):
        took = sorted(d for d, _ in flows[start : start + size])
        windows.append(
            f"{start / rate:.0f}-{(start + len(took)) / rate:.0f} s {took[len(took) // 2]:.2f}/{took[-1]:.2f}"
        )
    return ", ".join(windows)


@dataclass
class Phase:
    """One period of load: what wrk measured of the checks, the flows' outcomes, how long they took."""

    load: Load
    flows: list[tuple[float, str | None]]
    flow_seconds: float


def run_phase(
    check_url: str,
    script: Path,
    flows: tuple[Counter, list[tuple[str, str]], ThreadPoolExecutor],
    options: argparse.Namespace,
    seconds: int,
) -> Phase:
    """Checks for ``seconds`` with wrk while the flows start at ``--flows-per-second`` in the pool."""
    outcome: dict[str, Load] = {}

    def load_checks() -> None:
        outcome["load"] = run_wrk(
            check_url, script, connections=options.connections, duration=seconds, threads=WRK_THREADS
        )

    checks = threading.Thread(target=load_checks)
    checks.start()
    began = time.perf_counter()
    counter, pairs, pool = flows
    results = run_flows(counter, pairs, options.flows_per_second, pool)
    flow_seconds = time.perf_counter() - began
    checks.join()
    if "load" not in outcome:
        sys.exit("wrk failed: see the error above")
    return Phase(outcome["load"], results, flow_seconds)


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
) -> tuple[dict[str, subprocess.Popen[bytes]], str, str, int]:
    """The servers and the worker, ready: (processes by role, base URL of the staff API, of the checks, the
    checks' worker processes). With ``--check-workers``, the CAMARA API has a ``simkeep serve`` of its own
    (as behind a gateway that sends the relying parties' host there) and the other one keeps no facts copy."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        if options.check_workers:
            staff_env = {**env, "SIMKEEP_CAMARA_FACTS_CACHE": "false"}
            server, worker, base = start_service(staff_env, options.workers, workdir, backend)
            camara, _, check_base = start_service(
                env, options.check_workers, workdir, backend, name="camara", jobs=False
            )
            processes["replacements' server"] = server
            processes["checks' server"] = camara
            wait_ready(camara, check_base, workdir / f"camara-{backend}.log")
        else:
            server, worker, base = start_service(env, options.workers, workdir, backend)
            processes["server"] = server
            check_base = base
        if worker is not None:
            processes["worker"] = worker
        wait_ready(server, base, workdir / f"serve-{backend}.log")
    except BaseException:
        for process in processes.values():
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


def service_env(
    url: str, request_threads: int | None = None, request_sessions: int | None = None
) -> dict[str, str]:
    """The environment ``simkeep serve`` and ``simkeep worker`` run with on the benchmark's database (the
    servers' request threads and request sessions as set, else their defaults)."""
    tuned = {} if request_threads is None else {"SIMKEEP_REQUEST_THREADS": str(request_threads)}
    if request_sessions is not None:
        tuned["SIMKEEP_REQUEST_SESSIONS"] = str(request_sessions)
    return {
        **os.environ,
        **tuned,
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


def check_script(check_base: str, client: tuple[str, str], options: argparse.Namespace, script: Path) -> Path:
    """wrk's script for the checks, with a token for the bank's client (id, secret) from the checks' API."""
    form = {"grant_type": "client_credentials", "client_id": client[0], "client_secret": client[1]}
    token = httpx.post(check_base + "/oauth2/token", data=form, timeout=120).json()["access_token"]
    script.write_text(LUA % {"lines": options.lines, "token": token} + pacing(options))
    return script


def bench_backend(backend: str, options: argparse.Namespace, workdir: Path) -> list[str]:
    """One backend's run; its RESULT lines."""
    engine, url = database(backend)
    try:
        make_lines(engine, options.lines, utcnow())
        add_sim_changes(engine)
        settings = Settings(environment="development", secret_key=SECRET, database_url=url)
        warm_flows = int(options.flows_per_second * options.warmup)
        flows = warm_flows + int(options.flows_per_second * options.duration)
        with Session(engine) as session:
            issued = clients.create_client(
                session, settings, name="Load bank", scopes=["sim-swap:check"],
                requests_per_second=10_000_000, daily_quota=2_000_000_000,
            )  # fmt: skip
            session.commit()
            client_id, secret = issued.client.client_id, issued.secret
            clerk, pairs = seed_flows(session, settings, flows)
        env = service_env(url, options.request_threads, options.request_sessions)
        settle(env, workdir, backend)
        processes, base, check_base, check_workers = start_services(env, options, workdir, backend)
        try:
            waited = wait_facts(check_base, workers=check_workers)
            print(f"{backend}: facts copies ready {waited:.1f} s after the server answered", flush=True)
            print(f"{backend}: {topology(options)}", flush=True)
            script = check_script(check_base, (client_id, secret), options, workdir / f"check-{backend}.lua")
            counter = Counter.signed_in(base, clerk)
            target = check_base + "/sim-swap/v2/check"
            with ThreadPoolExecutor(max_workers=32) as pool:
                warming, measured = pairs[:warm_flows], pairs[warm_flows:]
                warm = run_phase(target, script, (counter, warming, pool), options, options.warmup)
                meter = CpuMeter({role: process.pid for role, process in processes.items()})
                print(f"{backend}: the measured load starts at {time.strftime('%H:%M:%S')}", flush=True)
                run = run_phase(target, script, (counter, measured, pool), options, options.duration)
                meter.stop()
        finally:
            for process in processes.values():
                stop(process)
        load, results, flow_seconds = run.load, run.flows, run.flow_seconds
        warm_errors = [e for _, e in warm.flows if e is not None]
        print(
            f"{backend}: warm-up ({options.warmup} s, not measured): checks {warm.load.rps:.0f} req/s, "
            f"{len(warm.flows)} flows, {len(warm_errors)} errors",
            flush=True,
        )
        durations = sorted(d for d, _ in results)
        errors = warm_errors + [e for _, e in results if e is not None]
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
        print(f"{backend}: flows by start, median/slowest s: {by_window(results, options.flows_per_second)}")
        print(f"{backend}: {meter}", flush=True)
        for note in load.notes:  # "SKIPPED thread=1 checks=N at (s:checks) 0.4:1004 ..."
            print(f"{backend}: checks not sent (wrk's schedule over 100 ms behind): {note[8:]}", flush=True)
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
        "--warmup",
        type=int,
        default=5,
        help="seconds of the same load before the measured DURATION (its figures are printed, not reported)",
    )
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
    parser.add_argument("--connections", type=int, default=64, help="wrk's connections for the checks")
    parser.add_argument(
        "--request-threads",
        type=int,
        default=8,
        help="SIMKEEP_REQUEST_THREADS of the servers (default 8: fewer stretches in which the replacements' "
        "server saturates at this load on two cores than with the default 40; docs/configuration.md)",
    )
    parser.add_argument(
        "--request-sessions",
        type=int,
        default=2,
        help="SIMKEEP_REQUEST_SESSIONS of the servers (default 2: a flow's server CPU stays what it is one "
        "flow at a time when the replacements pile up, where 26 cost 18-43% more; docs/configuration.md)",
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
