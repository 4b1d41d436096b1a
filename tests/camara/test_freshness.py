"""Freshness: a SIM change committed by one process is what every API worker says within one second.

Two uvicorn processes (two API workers, each with its own client cache, copy of the SIM Swap facts and
connection pool) serve one database; the SIM change is a real store activation committed by this test
process. With the copy of the facts (the default), a worker answers from a copy refreshed from the change
feed at most ``STALE_AFTER`` (0.9 s) ago, or else reads the database, so every check sent one second after
the commit must say swapped=true: that holds by construction, whatever the machine's load, and is what
the test asserts. With the copy turned off, the very first check after the commit must say it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from simkeep.camara import clients
from simkeep.config import Settings
from simkeep.models import OrderState, ReplacementOrder
from simkeep.replacements import activation
from tests.camara.orders import store_order
from tests.conftest import TEST_SECRET

CHECK = "/sim-swap/v2/check"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(settings: Settings, log: Path, *, facts_cache: bool) -> tuple[subprocess.Popen[bytes], str]:
    """One API worker: a uvicorn process of simkeep's app on a free loopback port."""
    port = _free_port()
    env = {
        **os.environ,
        "SIMKEEP_ENVIRONMENT": "test",
        "SIMKEEP_SECRET_KEY": TEST_SECRET,
        "SIMKEEP_DATABASE_URL": settings.database_url,
        "SIMKEEP_LOG_LEVEL": "WARNING",
        "SIMKEEP_CAMARA_FACTS_CACHE": "true" if facts_cache else "false",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
            [sys.executable, "-m", "uvicorn", "--factory", "simkeep.app:create_served_app",
             "--http", "simkeep.camara.protocol:CamaraHttpProtocol", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the API worker exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            httpx.post(url + "/oauth2/token", data={}, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        return
    pytest.fail("the API worker did not start within 60 s")


@pytest.fixture(params=[True, False], ids=["facts-copy", "no-copy"])
def workers(
    fresh: tuple[Engine, Settings], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[list[str]]:
    """Two API worker processes on the test's private database (with and without the copy of the SIM Swap
    facts); their base URLs."""
    _, settings = fresh
    started = [_start(settings, tmp_path / f"worker-{i}.log", facts_cache=request.param) for i in range(2)]
    try:
        for i, (process, url) in enumerate(started):
            _wait_ready(process, url, tmp_path / f"worker-{i}.log")
        yield [url for _, url in started]
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _facts_state(url: str) -> str:
    """How the worker answers checks (/healthz), once it is past loading its copy of the facts."""
    deadline = time.monotonic() + 60
    while True:
        state: str = httpx.get(url + "/healthz", timeout=10).json()["camaraFacts"]
        if state != "loading" or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def _check(url: str, token: str, msisdn: str) -> bool:
    """One check on a new connection (no keep-alive carried over)."""
    response = httpx.post(
        url + CHECK,
        json={"phoneNumber": msisdn, "maxAge": 1},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    swapped: bool = response.json()["swapped"]
    return swapped


@pytest.mark.concurrent
class TestFreshness:
    """A SIM change is visible to every API worker as soon as its activation commits."""

    def test_every_worker_sees_the_swap_within_one_second_of_its_commit(
        self,
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
        workers: list[str],
        request: pytest.FixtureRequest,
    ) -> None:
        """Both workers answer swapped=false before the activation (their caches warm); after the
        activation's commit, every check sent one second later answers swapped=true on both (without the
        copy of the facts, the first check at once)."""
        _, settings = fresh
        with fresh_session_factory() as s:
            clerk, reference, msisdn, _ = store_order(s, settings)
            issued = clients.create_client(s, settings, name="Bank", scopes=["sim-swap:check"])
            s.commit()
            client_id, secret = issued.client.client_id, issued.secret
        copy = "facts-copy" in request.node.callspec.id
        for url in workers:  # each worker says how it answers (one worker per process here)
            assert _facts_state(url) == ("ready" if copy else "off")
        if copy:  # the new line, too, is in every worker's copy within a second
            time.sleep(1.0)
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        token = httpx.post(workers[0] + "/oauth2/token", data=form, timeout=10).json()["access_token"]
        for url in workers:
            for _ in range(3):  # the client cache and the connection pool of each worker are warm
                assert _check(url, token, msisdn) is False

        with fresh_session_factory() as s:
            activation.activate(s, settings, actor=clerk, reference=reference)
            s.commit()
            assert s.scalar(
                select(ReplacementOrder.state).where(ReplacementOrder.reference == reference)
            ) == (OrderState.ACTIVATED)

        if copy:
            committed = time.monotonic()
            time.sleep(max(0.0, committed + 1.0 - time.monotonic()))
        assert [_check(url, token, msisdn) for url in workers] == [True, True]
