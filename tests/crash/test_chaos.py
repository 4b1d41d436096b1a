"""The crash test of the whole service: store replacements through the HTTP API while the server and the
worker are killed with SIGKILL at random moments and restarted, against a real osmo-hlr.

``simkeep serve`` and ``simkeep worker`` run as an operator runs them, in child processes, on a private
committed database (SQLite file or PostgreSQL schema) with osmo-hlr as the network. A clerk's client drives
the flows (submit, pay, assign the scanned SIM, activate), retrying a step whose answer was lost the way a
counter application would: by reading the order back. Meanwhile a killer SIGKILLs the server or the worker
every 0.5 to 2.5 seconds and starts it again. Afterwards: no accepted order is lost, every order is
activated exactly once, the line-SIM invariants hold, the audit chain is intact, every notification was
sent, the HLR holds each number on exactly the new SIM, and ``simkeep network reconcile`` finds nothing.

``SIMKEEP_CRASH_FLOWS`` sets the number of flows (200 by default, as issue 9 asks).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from simkeep.audit.service import verify_chain
from simkeep.config import Settings
from simkeep.models import (
    Job,
    JobState,
    Line,
    LineStatus,
    NetworkOperation,
    Notification,
    ReplacementOrder,
    Sim,
    SimChange,
    SimStatus,
    StaffRole,
)
from tests import factories
from tests.jobs.conftest import cli_environment, simkeep, simkeep_command
from tests.network.osmo import OSMO_HLR, OSMO_HLR_MISSING, OsmoHlrHandle, start_osmo_hlr

pytestmark = pytest.mark.skipif(OSMO_HLR is None, reason=OSMO_HLR_MISSING)

FLOWS = int(os.environ.get("SIMKEEP_CRASH_FLOWS", "200"))
#: Guards against a hung test (not measurements): the whole drive, and the settling afterwards.
DRIVE_PATIENCE_S = 900.0
SETTLE_PATIENCE_S = 180.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Child:
    """A simkeep process that can be killed and started again."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    ready: Callable[[], bool] = lambda: True
    process: subprocess.Popen[bytes] | None = None
    kills: int = 0

    def start(self) -> None:
        """Start the process and wait until it is ready."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - the installed simkeep command
                [simkeep_command(), *self.args], env={**os.environ, **self.env}, stdout=out, stderr=out
            )
        give_up = time.monotonic() + 60
        while not self.ready():
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.process.returncode}): {self.log.read_text()[-3000:]}")
            if time.monotonic() > give_up:
                pytest.fail(f"{self.name} did not become ready")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL it, as a crash or an out-of-memory killer would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.kills += 1

    def stop(self) -> None:
        """Stop it for good."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Flow:
    """One holder's replacement at the counter."""

    msisdn: str
    iccid: str
    new_imsi: str
    reference: str | None = None
    state: str | None = None


@dataclass
class Killer:
    """Kills the server or the worker at random moments and starts it again, until stopped."""

    children: list[Child]
    seed: int
    stop_event: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)

    def run(self) -> None:
        """The killer's loop (in a thread)."""
        rng = random.Random(self.seed)
        try:
            while not self.stop_event.wait(rng.uniform(0.5, 2.5)):
                victim = rng.choice(self.children)
                victim.kill()
                victim.start()
        except BaseException as exc:
            self.errors.append(exc)


class Counter:
    """A clerk's HTTP client that survives the server's deaths."""

    def __init__(self, base: str, username: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=10.0)
        self.username = username
        self.headers: dict[str, str] = {}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        give_up = time.monotonic() + 120
        while True:
            try:
                if not self.headers and not path.startswith("/api/v1/auth"):
                    self.sign_in()
                response = self.client.request(method, path, json=body, headers=self.headers)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 500:
                return response
            if time.monotonic() > give_up:
                detail = response.text if response is not None else "no answer"
                pytest.fail(f"{method} {path} kept failing: {detail}")
            time.sleep(0.05)

    def sign_in(self) -> None:
        """Get a staff token (retrying while the server is down)."""
        self.headers = {}
        r = self._call(
            "POST",
            "/api/v1/auth/staff/token",
            {"username": self.username, "password": factories.STAFF_PASSWORD},
        )
        assert r.status_code == 200, r.text
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def order(self, flow: Flow) -> dict[str, Any] | None:
        """The flow's order as the server has it: by reference, or the open one of the number."""
        if flow.reference is not None:
            r = self._call("GET", f"/api/v1/replacements/{flow.reference}")
            assert r.status_code == 200, r.text
            return dict(r.json())
        r = self._call("GET", f"/api/v1/replacements?msisdn={flow.msisdn.replace('+', '%2B')}")
        assert r.status_code == 200, r.text
        orders = [o for o in r.json() if o["state"] not in ("cancelled", "rejected", "expired")]
        return dict(orders[-1]) if orders else None

    def step(self, flow: Flow, path: str | None, body: dict[str, Any], done_states: set[str]) -> None:
        """Post one step; a refusal because it was already done (its answer lost) reads the order back."""
        assert flow.reference is not None
        r = self._call("POST", f"/api/v1/replacements/{flow.reference}/{path}", body)
        if r.status_code == 200:
            flow.state = r.json()["state"]
            return
        current = self.order(flow)
        assert current is not None
        assert r.status_code == 409 and current["state"] in done_states, (r.status_code, r.text, current)
        flow.state = current["state"]

    def drive(self, flow: Flow) -> None:
        """Submit, pay, assign the SIM and activate, each step once in effect."""
        submitted = {
            "msisdn": flow.msisdn,
            "channel": "store",
            "in_person_document_number": factories.DOCUMENT,
        }
        r = self._call("POST", "/api/v1/replacements", submitted)
        if r.status_code == 201:
            flow.reference = r.json()["reference"]
        else:
            assert r.json().get("code") == "REPLACEMENT_ALREADY_OPEN", r.text  # the first answer was lost
            current = self.order(flow)
            assert current is not None
            flow.reference = current["reference"]
        after_paid = {"paid", "sim_assigned", "activating", "activated"}
        self.step(flow, "payment", {"method": "cash"}, after_paid)
        self.step(flow, "sim", {"iccid": flow.iccid}, after_paid - {"paid"})
        self.step(flow, "activation", {}, {"activating", "activated"})


@pytest.fixture(scope="module")
def osmo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OsmoHlrHandle]:
    """One osmo-hlr for this module."""
    handle = start_osmo_hlr(tmp_path_factory.mktemp("osmo-hlr-chaos"))
    try:
        yield handle
    finally:
        handle.stop()


def _seed(session: Session, settings: Settings, hlr: OsmoHlrHandle, flows: int) -> tuple[str, list[Flow]]:
    """A store with a clerk, ``flows`` holders live in the HLR and as many SIMs in the store's stock."""
    store = factories.store(session)
    clerk = factories.staff(session, StaffRole.CLERK, store_row=store)
    out = []
    with contextlib.closing(hlr.adapter()) as adapter:
        for _ in range(flows):
            holder = factories.holder(session, settings)
            sim = factories.sim(session, store=store)
            adapter.provision(holder.sim.imsi)
            adapter.bind_number(holder.sim.imsi, holder.msisdn)
            out.append(Flow(holder.msisdn, sim.iccid, sim.imsi))
    session.commit()
    return clerk.username, out


def _settled(factory: Callable[[], Session]) -> bool:
    with factory() as s:
        open_ops = s.scalar(select(func.count()).select_from(NetworkOperation).where(
            NetworkOperation.status == "pending", NetworkOperation.not_before.is_(None)
        ))  # fmt: skip
        waiting = s.scalar(select(func.count()).select_from(Job).where(
            Job.state.in_([JobState.QUEUED, JobState.RUNNING]), Job.kind != "network.apply"
        ))  # fmt: skip
        activating = s.scalar(
            select(func.count()).select_from(ReplacementOrder).where(ReplacementOrder.state == "activating")
        )
        return open_ops == 0 and waiting == 0 and activating == 0


class TestChaos:
    """Store replacements through the API while server and worker are SIGKILLed at random and restarted."""

    def test_nothing_lost_nothing_doubled(
        self,
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
        osmo: OsmoHlrHandle,
        tmp_path: Path,
    ) -> None:
        """Every accepted order is activated once; lines, SIMs, audit, notifications and the HLR agree."""
        if osmo.process is None or osmo.process.poll() is not None:
            osmo.start()
        osmo.wipe()
        _, settings = fresh
        with fresh_session_factory() as s:
            clerk, flows = _seed(s, settings, osmo, FLOWS)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **cli_environment(settings),
            "SIMKEEP_OTP_TRANSPORT": "null",
            "SIMKEEP_NETWORK_ADAPTER": "osmo-hlr",
            "SIMKEEP_HLR_HOST": osmo.host,
            "SIMKEEP_HLR_CTRL_PORT": str(osmo.ctrl_port),
            "SIMKEEP_HLR_VTY_PORT": str(osmo.vty_port),
            "SIMKEEP_JOB_POLL_SECONDS": "0.05",
            "SIMKEEP_JOB_LEASE_SECONDS": "3",
        }

        def server_ready() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200
            except httpx.TransportError:
                return False

        server = Child("server", ["serve", "--port", str(port), "--no-upgrade"], env, tmp_path / "server.log")
        server.ready = server_ready
        worker = Child("worker", ["worker"], env, tmp_path / "worker.log")
        server.start()
        worker.start()
        killer = Killer([server, worker], seed=FLOWS)
        thread = threading.Thread(target=killer.run, daemon=True)
        counter = Counter(base, clerk)
        try:
            thread.start()
            give_up = time.monotonic() + DRIVE_PATIENCE_S
            for flow in flows:
                counter.drive(flow)
                assert time.monotonic() < give_up, "the flows took too long"
            killer.stop_event.set()
            thread.join(timeout=60)
            assert not killer.errors, killer.errors
            for child in (server, worker):
                if child.process is None or child.process.poll() is not None:
                    child.start()
            give_up = time.monotonic() + SETTLE_PATIENCE_S
            while not _settled(fresh_session_factory):
                assert time.monotonic() < give_up, "the service did not settle after the chaos"
                time.sleep(0.2)
        finally:
            killer.stop_event.set()
            server.stop()
            worker.stop()
        assert server.kills + worker.kills > 0

        references = [f.reference for f in flows]
        assert None not in references
        with fresh_session_factory() as s:
            orders = {o.reference: o for o in s.scalars(select(ReplacementOrder))}
            assert set(orders) == set(references)  # none lost, none made twice
            assert {str(o.state) for o in orders.values()} == {"activated"}
            changes = s.scalars(select(SimChange).where(SimChange.order_id.is_not(None))).all()
            assert sorted(c.order_id or 0 for c in changes) == sorted(o.id for o in orders.values())
            for flow in flows:
                line = s.scalars(select(Line).where(Line.msisdn == flow.msisdn)).one()
                sim = s.scalars(select(Sim).where(Sim.iccid == flow.iccid)).one()
                assert (line.status, line.sim_id, sim.status) == (LineStatus.ACTIVE, sim.id, SimStatus.ACTIVE)
            live_per_line = s.execute(
                select(Line.id, func.count(Sim.id))
                .join(Sim, Sim.id == Line.sim_id)
                .where(Sim.status == SimStatus.ACTIVE)
                .group_by(Line.id)
            ).all()
            assert all(n == 1 for _, n in live_per_line)
            assert verify_chain(s).ok
            statuses = set(s.scalars(select(Notification.status)))
            assert statuses <= {"sent", "delivered"}, statuses
            dead = s.scalar(select(func.count()).select_from(Job).where(Job.state == JobState.DEAD))
            assert dead == 0
        with contextlib.closing(osmo.adapter()) as hlr:
            by_number: dict[str, list[tuple[str, bool]]] = {}
            for entry in hlr.subscribers():
                if entry.msisdn:
                    by_number.setdefault(entry.msisdn, []).append((entry.imsi, entry.barred))
        for flow in flows:
            assert by_number[flow.msisdn] == [(flow.new_imsi, False)]
        result = simkeep("network", "reconcile", "--json", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)
