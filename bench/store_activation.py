"""Benchmark a store replacement's activation against a real osmo-hlr, through the HTTP API.

Run from the repository root: ``python bench/store_activation.py [--orders N] [--backends sqlite,postgres]``.
It starts osmo-hlr (Debian package ``osmo-hlr``) on a free loopback address with a temporary database, makes
a freshly migrated simkeep database per backend, prepares N store orders paid and with their new SIM
assigned (each holder's old SIM live in the HLR), then, as a clerk at the counter would, posts
``/api/v1/replacements/{reference}/activation`` for each order in turn. The time is from sending the request
to its answer, which comes after the number moved in the HLR (new IMSI created, old barred and unbound,
number bound, new unbarred) and the SIM change was recorded. Each order is checked afterwards by reading the
HLR back. The last lines are ``RESULT store_activation_median_ms_<backend> <ms> ms`` and, for the first
backend, ``RESULT store_activation_median_ms <ms> ms`` (target: under 500 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the osmo-hlr runner and the data factories live in tests/

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from tests import factories  # noqa: E402
from tests.network.osmo import OSMO_HLR, OSMO_HLR_MISSING, OsmoHlrHandle, start_osmo_hlr  # noqa: E402

from simkeep.app import create_app  # noqa: E402
from simkeep.config import Settings  # noqa: E402
from sims_import import fresh_database, postgres_available  # noqa: E402  (a sibling script)


def prepare(session: Session, settings: Settings, hlr: OsmoHlrHandle, orders: int) -> tuple[str, list[str]]:
    """``orders`` store orders ready to activate, old SIMs live in the HLR; returns (clerk, references)."""
    store = factories.store(session)
    references = []
    username = ""
    with contextlib.closing(hlr.adapter()) as adapter:
        for _ in range(orders):
            ready = factories.ready_store_order(session, settings, store_row=store)
            adapter.provision(ready.holder.sim.imsi)
            adapter.bind_number(ready.holder.sim.imsi, ready.holder.msisdn)
            references.append(ready.reference)
            username = ready.clerk_username
    session.commit()
    return username, references


def run_backend(backend: str, hlr: OsmoHlrHandle, orders: int, workdir: Path) -> float:
    """Activate every order through the API; returns the median in milliseconds."""
    with fresh_database(backend, workdir) as (url, engine):
        settings = Settings(
            environment="test",
            secret_key="bench-secret-key-bench-secret-key-0123",  # noqa: S106 - a throwaway database
            database_url=url,
            otp_transport="null",
            network_adapter="osmo-hlr",
            hlr_host=hlr.host,
            hlr_ctrl_port=hlr.ctrl_port,
            hlr_vty_port=hlr.vty_port,
        )
        with Session(engine) as session:
            clerk, references = prepare(session, settings, hlr, orders)
        hlr_sessions: list[float] = []
        with TestClient(create_app(settings)) as client:
            token = client.post(
                "/api/v1/auth/staff/token", json={"username": clerk, "password": factories.STAFF_PASSWORD}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            for reference in references:
                started = time.perf_counter()
                response = client.post(
                    f"/api/v1/replacements/{reference}/activation", json={}, headers=headers
                )
                hlr_sessions.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200 or response.json()["state"] != "activated":
                    raise SystemExit(
                        f"activation of {reference} failed: {response.status_code} {response.text}"
                    )
        with contextlib.closing(hlr.adapter()) as adapter:
            live = [e for e in adapter.subscribers() if e.msisdn and not e.barred]
        if len(live) != orders:
            raise SystemExit(f"expected {orders} live numbers in the HLR, found {len(live)}")
        hlr.wipe()
        median = statistics.median(hlr_sessions)
        p95 = statistics.quantiles(hlr_sessions, n=20)[-1] if len(hlr_sessions) >= 20 else max(hlr_sessions)
        print(f"{backend}: {orders} activations, median {median:.1f} ms, p95 {p95:.1f} ms")
        return median


def main() -> None:
    """Start osmo-hlr, activate on each backend, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100, help="store orders to activate per backend")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    options = parser.parse_args()
    if OSMO_HLR is None:
        raise SystemExit(OSMO_HLR_MISSING)
    backends = [b for b in options.backends.split(",") if b != "postgres" or postgres_available()]
    results: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        hlr = start_osmo_hlr(Path(tmp) / "hlr")
        try:
            for backend in backends:
                workdir = Path(tmp) / backend
                workdir.mkdir()
                median = run_backend(backend, hlr, options.orders, workdir)
                results.append(f"RESULT store_activation_median_ms_{backend} {median:.1f} ms")
                if len(results) == 1:
                    results.append(f"RESULT store_activation_median_ms {median:.1f} ms")
        finally:
            hlr.stop()
    print("\n".join(results))


if __name__ == "__main__":
    main()
