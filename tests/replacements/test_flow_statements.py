"""What a store replacement sends to the database and to the thread pool, request by request.

On SQLite every write transaction holds the one write lock from its first statement to its commit, and each
statement there gives the interpreter lock up and waits to get it back: under load the statements a flow
sends are what its transactions hold the lock for (docs/SECURITY.md, "Load"). These tests count them for the
four requests of a store replacement on the API's own app (``simkeep serve``'s, owning its database), so a
change that adds statements to the flow is seen, and check that the flow still ends as it must.

They also count each request's trips to the thread pool (where the app runs its sync code). Each trip wakes
a thread and hands the interpreter lock over and back; under load that is CPU the server's other work
(in ``bench/load_mixed.py``, the CAMARA checks beside it) does not get. A request needs two: the caller's
token (read in the database) and the endpoint's work; the session, the role checks, the settings and the
response's serialisation run on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from simkeep.app import create_app
from simkeep.audit.service import verify_chain
from simkeep.config import Settings
from simkeep.models import Line, ReplacementOrder, Sim, SimChange, SimStatus, StaffRole
from tests import factories
from tests.helpers import staff_headers

#: The most statements each request may send (the token's lookup included), per backend: SQLite has no
#: multi-row insert with RETURNING (its ``BEGIN IMMEDIATE`` goes to the driver directly and is not counted);
#: PostgreSQL takes an advisory lock before the audit chain's head.
BUDGET = {
    "sqlite": {"submit": 22, "payment": 8, "sim": 9, "activation": 28},
    "postgresql": {"submit": 19, "payment": 9, "sim": 10, "activation": 29},
}
#: The thread-pool trips of each request: the token's lookup and the endpoint.
TRIPS = {"submit": 2, "payment": 2, "sim": 2, "activation": 2}


@pytest.fixture
def owned(fresh: tuple[Engine, Settings]) -> Iterator[tuple[TestClient, Engine, dict[str, str], str, str]]:
    """The served app on a private database: its client, the engine, a clerk's headers, a holder's number
    and a SIM in the clerk's store."""
    engine, settings = fresh
    with Session(engine) as session:
        store = factories.store(session)
        clerk = factories.staff(session, StaffRole.CLERK, store_row=store).username
        msisdn = factories.holder(session, settings).msisdn
        iccid = factories.sim(session, store=store).iccid
        session.commit()
    with TestClient(create_app(settings)) as client:
        yield client, engine, staff_headers(client, clerk), msisdn, iccid


def _flow(
    client: TestClient, headers: dict[str, str], msisdn: str, iccid: str, seen: list[str]
) -> tuple[dict[str, int], str]:
    """Run the four requests of a store replacement, which ends with the order activated: how many items
    each request added to ``seen`` (emptied between requests), and the order's reference."""
    counts = {}
    body = {"msisdn": msisdn, "channel": "store", "in_person_document_number": factories.DOCUMENT}
    r = client.post("/api/v1/replacements", json=body, headers=headers)
    assert r.status_code == 201, r.text
    counts["submit"] = len(seen)
    ref = r.json()["reference"]
    for step, payload in (("payment", {"method": "cash"}), ("sim", {"iccid": iccid}), ("activation", {})):
        seen.clear()
        r = client.post(f"/api/v1/replacements/{ref}/{step}", json=payload, headers=headers)
        assert r.status_code == 200, r.text
        counts[step] = len(seen)
    assert r.json()["state"] == "activated"
    return counts, ref


def test_a_store_replacement_stays_within_its_thread_pool_trips(
    owned: tuple[TestClient, Engine, dict[str, str], str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of the four requests goes to the thread pool twice: for the token and for the endpoint."""
    client, _engine, headers, msisdn, iccid = owned
    trips: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        trips.append(repr(func))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    counts, _ref = _flow(client, headers, msisdn, iccid, trips)
    assert counts == TRIPS, trips


def test_a_store_replacement_stays_within_its_statements(
    owned: tuple[TestClient, Engine, dict[str, str], str, str],
) -> None:
    client, engine, headers, msisdn, iccid = owned
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "camara_" not in statement:  # the CAMARA workers' heartbeat shares the engine, on its own timer
            sent.append(statement)

    # The request's own engines (its writes, and on SQLite its token's read-only lookup), not the CAMARA
    # facts' poller's, which runs beside the requests.
    engines = []
    for scope in ("session_scope", "read_scope"):
        opened = getattr(client.app.state, scope, None)  # type: ignore[attr-defined]
        if opened is not None:
            with opened() as session:
                engines.append(session.get_bind())
    for bound in engines:
        event.listen(bound, "before_cursor_execute", count)
    try:
        counts, ref = _flow(client, headers, msisdn, iccid, sent)
    finally:
        for bound in engines:
            event.remove(bound, "before_cursor_execute", count)
    budget = BUDGET[engine.dialect.name]
    assert {k: v for k, v in counts.items() if v > budget[k]} == {}, counts

    with Session(engine) as session:
        order = session.scalar(select(ReplacementOrder).where(ReplacementOrder.reference == ref))
        assert order is not None
        line = session.get(Line, order.line_id)
        new_sim = session.get(Sim, order.new_sim_id)
        old_sim = session.get(Sim, order.old_sim_id)
        assert line is not None and new_sim is not None and old_sim is not None
        assert (line.sim_id, new_sim.status, old_sim.status) == (
            new_sim.id,
            SimStatus.ACTIVE,
            SimStatus.RETIRED,
        )
        changes = session.scalar(
            select(func.count()).select_from(SimChange).where(SimChange.order_id == order.id)
        )
        assert changes == 1
        report = verify_chain(session)
        assert report.ok, report
