"""``simkeep demo``: load the demo dataset (see ``docs/demo.md``) into the configured database."""

from __future__ import annotations

import dataclasses
import unicodedata
from typing import TYPE_CHECKING

import typer

from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_engine
from simkeep.db.engine import make_session_factory
from simkeep.demo import people
from simkeep.errors import DomainError

if TYPE_CHECKING:
    from simkeep.demo import dataset

API_BASE = "http://127.0.0.1:8000"
WARNING = (
    f"warning: the demo credentials (staff password {people.DEMO_STAFF_PASSWORD!r}, service password "
    f"{people.DEMO_SERVICE_PASSWORD!r}) are public. Never load the demo into a database real people use."
)


def demo(as_json: bool = JSON_OPTION) -> None:
    """Load the demo dataset: stores, SIM stock, staff, holders and orders in many states (idempotent)."""
    # Imported here: the dataset (with the image stack) and Alembic would slow every other command's start.
    from simkeep.db import migrate
    from simkeep.demo import dataset

    settings = load_settings()
    if settings.environment == "production":
        raise fail(
            "The demo dataset has public passwords; it is not loaded into a production database.",
            as_json=as_json,
            code="DEMO_REFUSED_IN_PRODUCTION",
        )
    typer.echo(WARNING, err=True)
    with open_engine(settings) as engine:
        migrate.upgrade(engine)
        session = make_session_factory(engine)()
        try:
            created = dataset.load(session, settings)
            session.commit()
            numbers = dataset.summarise(session)
        except DomainError as exc:
            session.rollback()
            raise fail(exc.message, as_json=as_json, code=exc.code, **exc.details) from exc
        finally:
            session.close()

    result = {
        "created": dataclasses.asdict(created),
        "already_loaded": not created.anything,
        "api_docs": f"{API_BASE}/docs",
        "staff_sign_in": {
            "endpoint": "POST /api/v1/auth/staff/token",
            "password": people.DEMO_STAFF_PASSWORD,
            "users": [
                {"username": s.username, "role": str(s.role), "store": s.store_code} for s in people.STAFF
            ],
        },
        "holder_sign_in": {
            "endpoint": "POST /api/v1/auth/line/token",
            "service_password": people.DEMO_SERVICE_PASSWORD,
        },
        "numbers": [dataclasses.asdict(n) for n in numbers],
        "warning": WARNING,
    }
    emit(result, as_json=as_json, text=_text(created, numbers))


def _text(created: dataset.Created, numbers: list[dataset.NumberSummary]) -> str:
    if created.anything:
        head = (
            f"demo data loaded: {created.stores} stores, {created.sims} SIMs, {created.staff_users} staff "
            f"users, {created.lines} lines, {created.orders} replacement orders, "
            f"{created.loss_reports} loss reports."
        )
    else:
        head = "demo data already present: nothing added."
    staff = ", ".join(
        f"{s.username} ({s.role}{', ' + s.store_code if s.store_code else ''})" for s in people.STAFF
    )
    rows = []
    for n in numbers:
        order = f"{n.order_reference} {n.order_channel} {n.order_state}" if n.order_reference else "-"
        idle = f"{n.days_since_activity}d idle" if n.days_since_activity is not None else ""
        rows.append(
            f"  {n.msisdn:<15} {_pad(n.holder, 14)} {n.line_status:<9} {idle:>9}  {order:<36} {n.description}"
        )
    return "\n".join(
        [
            head,
            "",
            f"Serve it:        simkeep serve   (API and its docs: {API_BASE}/docs)",
            "Staff sign-in:   POST /api/v1/auth/staff/token "
            f'{{"username": ..., "password": "{people.DEMO_STAFF_PASSWORD}"}}',
            f"  users: {staff}",
            "Holder sign-in:  POST /api/v1/auth/line/token "
            f'{{"msisdn": ..., "service_password": "{people.DEMO_SERVICE_PASSWORD}"}}',
            "",
            "Demo numbers (fictitious people; line status, days since last activity, newest order):",
            *rows,
            "",
            "A walk-through of a replacement through every state is in docs/demo.md.",
        ]
    )


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (Chinese characters take two)."""
    used = sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)
    return text + " " * max(width - used, 0)
