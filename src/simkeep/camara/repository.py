"""Queries of the CAMARA domain: relying-party clients, recorded queries, numbers and their history,
subscriptions and the API workers that share client rates."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, Select, String, any_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from simkeep.models import (
    ApiQuery,
    CamaraSubscription,
    CamaraWorker,
    Line,
    NumberRecycling,
    RelyingParty,
    SimChange,
    SubscriptionStatus,
)


def client_by_client_id(session: Session, client_id: str) -> RelyingParty | None:
    """The client with this public id, if any."""
    return session.scalars(select(RelyingParty).where(RelyingParty.client_id == client_id)).one_or_none()


def all_clients(session: Session) -> Sequence[RelyingParty]:
    """Every client, oldest first."""
    return session.scalars(select(RelyingParty).order_by(RelyingParty.id)).all()


def answered_since(
    session: Session, client_pk: int, since: datetime, *, until: datetime | None = None
) -> int:
    """Queries of one client answered (not refused for rate or quota) since ``since`` (and before ``until``),
    through the (client_id, asked_at) index."""
    stmt = (
        select(func.count())
        .select_from(ApiQuery)
        .where(ApiQuery.client_id == client_pk, ApiQuery.asked_at >= since, ApiQuery.status != 429)
    )
    if until is not None:
        stmt = stmt.where(ApiQuery.asked_at < until)
    return int(session.scalar(stmt) or 0)


_QUERY_COLUMNS = ("client_id", "api", "msisdn", "answer", "status", "asked_at")
#: One statement for the whole batch, its rows in one JSON parameter ``[[client, api, msisdn, answer, status,
#: asked_us], ...]`` (asked_us: microseconds since the epoch, UTC): the database unpacks it, so the writer
#: thread does no work per row but ``json.dumps`` and never hands the GIL back and forth with the event loop
#: per row (the driver releases it around every step of an ``executemany``, which under load cost the event
#: loop more than the inserts themselves). SQLite keeps times as SQLAlchemy writes them (UTC, no zone).
#: PostgreSQL reads the batch as jsonb: parsed once, where ``->>`` on json parses each element again for every
#: field (measured: about a third less of the database's CPU a row).
_QUERY_INSERT_SQLITE = (
    "INSERT INTO api_queries (client_id, api, msisdn, answer, status, asked_at) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), "
    "substr(json_extract(value, '$[3]'), 1, 200), json_extract(value, '$[4]'), "
    "strftime('%Y-%m-%d %H:%M:%S', json_extract(value, '$[5]') / 1000000, 'unixepoch') "
    "|| printf('.%06d', json_extract(value, '$[5]') % 1000000) "
    "FROM json_each(?)"
)
_QUERY_INSERT_POSTGRES = (
    "INSERT INTO api_queries (client_id, api, msisdn, answer, status, asked_at) "
    "SELECT (e->>0)::integer, e->>1, e->>2, left(e->>3, 200), (e->>4)::integer, "
    "timestamptz 'epoch' + (e->>5)::bigint * interval '1 microsecond' "
    "FROM jsonb_array_elements(CAST(%s AS jsonb)) AS e"
)
#: Rows per statement of :func:`insert_queries`.
QUERY_CHUNK = 1000
#: (client_id, api, msisdn, answer, status, asked_us): asked_us is microseconds since the epoch (UTC).
QueryRow = tuple[int, str, str | None, str, int, int]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def insert_queries(session: Session, rows: Sequence[QueryRow]) -> None:
    """Write recorded queries ``(client_id, api, msisdn, answer, status, asked_us)``, one statement per
    :data:`QUERY_CHUNK` rows (see ``_QUERY_INSERT_SQLITE``; a chunk's JSON is made in about a millisecond,
    so the writer never holds the GIL against the event loop for long); an answer is kept to its first 200
    characters."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name in ("sqlite", "postgresql"):
        sql = _QUERY_INSERT_SQLITE if connection.dialect.name == "sqlite" else _QUERY_INSERT_POSTGRES
        for start in range(0, len(rows), QUERY_CHUNK):
            chunk = rows[start : start + QUERY_CHUNK]
            connection.exec_driver_sql(sql, (json.dumps(chunk, ensure_ascii=False),))
    else:
        values = [
            dict(zip(_QUERY_COLUMNS, (*row[:3], row[3][:200], row[4], _from_us(row[5])), strict=True))
            for row in rows
        ]
        session.execute(insert(ApiQuery), values)


def _from_us(asked_us: int) -> datetime:
    """An aware UTC time from microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=asked_us)


def line_by_msisdn(session: Session, msisdn: str) -> Line | None:
    """The line that holds this number now, if any."""
    return session.scalars(select(Line).where(Line.msisdn == msisdn)).one_or_none()


def recyclings_of(session: Session, msisdn: str) -> Sequence[NumberRecycling]:
    """Recyclings of a number that were not undone."""
    return session.scalars(
        select(NumberRecycling).where(NumberRecycling.msisdn == msisdn, NumberRecycling.undone_at.is_(None))
    ).all()


_LINES = Line.__table__.c
_CHANGES = SimChange.__table__.c
#: The whole SIM Swap lookup in one indexed statement (Core, compiled once): the line by its unique number
#: and its latest SIM change through the (line_id, changed_at) index. A known and an unknown number run the
#: same statement; the unknown one simply returns no row.
SWAP_FACTS = select(
    _LINES.status,
    _LINES.activated_at,
    select(func.max(_CHANGES.changed_at)).where(_CHANGES.line_id == _LINES.id).scalar_subquery(),
).where(_LINES.msisdn == bindparam("msisdn"))
#: :data:`SWAP_FACTS` for a list of numbers at once (``msisdns``), each row led by its number.
SWAP_FACTS_MANY = select(
    _LINES.msisdn,
    _LINES.status,
    _LINES.activated_at,
    select(func.max(_CHANGES.changed_at)).where(_CHANGES.line_id == _LINES.id).scalar_subquery(),
).where(_LINES.msisdn == any_(bindparam("msisdns", type_=ARRAY(String))))


def facts_of_all_lines() -> Select[Any]:
    """:data:`SWAP_FACTS_MANY` for every line (each worker's copy, :mod:`simkeep.camara.facts`)."""
    return select(
        _LINES.msisdn,
        _LINES.status,
        _LINES.activated_at,
        select(func.max(_CHANGES.changed_at)).where(_CHANGES.line_id == _LINES.id).scalar_subquery(),
    )


#: (line status, activation time, last SIM change or None).
SwapFacts = tuple[str, datetime, datetime | None]


def swap_facts(session: Session, msisdn: str) -> SwapFacts | None:
    """(line status, activation time, last SIM change) of the line holding ``msisdn``, or None."""
    row = session.execute(SWAP_FACTS, {"msisdn": msisdn}).first()
    if row is None:
        return None
    return str(row[0]), row[1], row[2]


# --- subscriptions (sim-swap-subscriptions) ------------------------------------------------------------


def subscription_by_public_id(
    session: Session, public_id: str, *, client_pk: int, for_update: bool = False
) -> CamaraSubscription | None:
    """One client's subscription by its public id."""
    stmt = select(CamaraSubscription).where(
        CamaraSubscription.public_id == public_id, CamaraSubscription.client_id == client_pk
    )
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def subscriptions_of(
    session: Session, *, client_pk: int, msisdn: str | None, include_deleted: bool = False
) -> Sequence[CamaraSubscription]:
    """A client's subscriptions, oldest first, optionally for one number."""
    stmt = select(CamaraSubscription).where(CamaraSubscription.client_id == client_pk)
    if msisdn is not None:
        stmt = stmt.where(CamaraSubscription.msisdn == msisdn)
    if not include_deleted:
        stmt = stmt.where(CamaraSubscription.status != SubscriptionStatus.DELETED)
    return session.scalars(stmt.order_by(CamaraSubscription.id)).all()


def count_active_subscriptions(session: Session, client_pk: int) -> int:
    """How many active subscriptions a client holds."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(CamaraSubscription)
            .where(
                CamaraSubscription.client_id == client_pk,
                CamaraSubscription.status == SubscriptionStatus.ACTIVE,
            )
        )
        or 0
    )


def active_duplicate(session: Session, *, client_pk: int, line_id: int, sink: str) -> bool:
    """Whether the client already has an active subscription of this line to this sink."""
    found = session.scalar(
        select(CamaraSubscription.id)
        .where(
            CamaraSubscription.client_id == client_pk,
            CamaraSubscription.line_id == line_id,
            CamaraSubscription.sink == sink,
            CamaraSubscription.status == SubscriptionStatus.ACTIVE,
        )
        .limit(1)
    )
    return found is not None


def active_subscriptions_of_line(session: Session, line_id: int) -> Sequence[CamaraSubscription]:
    """Active subscriptions to a line's swaps, locked for the caller's transaction."""
    return session.scalars(
        select(CamaraSubscription)
        .where(CamaraSubscription.line_id == line_id, CamaraSubscription.status == SubscriptionStatus.ACTIVE)
        .order_by(CamaraSubscription.id)
        .with_for_update()
    ).all()


def subscriptions_due_to_end(
    session: Session, *, now: datetime, token_horizon: datetime, client_pk: int | None = None
) -> Sequence[CamaraSubscription]:
    """Active subscriptions whose expiry time has come or whose sink token runs out before the horizon."""
    stmt = select(CamaraSubscription).where(
        CamaraSubscription.status == SubscriptionStatus.ACTIVE,
        or_(
            CamaraSubscription.expires_at <= now,
            CamaraSubscription.access_token_expires_at <= token_horizon,
        ),
    )
    if client_pk is not None:
        stmt = stmt.where(CamaraSubscription.client_id == client_pk)
    return session.scalars(stmt.order_by(CamaraSubscription.id).with_for_update()).all()


def subscription_for_update(session: Session, pk: int) -> CamaraSubscription | None:
    """A subscription by its row id, locked for the caller's transaction."""
    return session.scalars(
        select(CamaraSubscription).where(CamaraSubscription.id == pk).with_for_update()
    ).one_or_none()


# --- workers sharing client rates ------------------------------------------------------------------------


def heartbeat(session: Session, *, worker_id: str, now: datetime, live_after: datetime) -> int:
    """Record this worker as alive now; returns how many workers were seen since ``live_after`` (itself
    included). Rows of workers gone for an hour are removed."""
    updated = session.execute(
        update(CamaraWorker).where(CamaraWorker.worker_id == worker_id).values(seen_at=now)
    )
    if not int(updated.rowcount):  # type: ignore[attr-defined]
        session.add(CamaraWorker(worker_id=worker_id, seen_at=now))
        session.flush()
    session.execute(delete(CamaraWorker).where(CamaraWorker.seen_at < now - timedelta(hours=1)))
    return int(
        session.scalar(
            select(func.count()).select_from(CamaraWorker).where(CamaraWorker.seen_at >= live_after)
        )
        or 1
    )


# --- the query log read by number (privacy requests) ------------------------------------------------------


class QueryAbout(NamedTuple):
    """One recorded query about a number: who asked (public client id and name), what, the answer, when."""

    client_id: str
    client_name: str
    api: str
    answer: str
    status: int
    asked_at: datetime


def queries_about(
    session: Session, msisdn: str, *, since: datetime, until: datetime, limit: int
) -> list[QueryAbout]:
    """The recorded queries about ``msisdn`` asked in ``[since, until)``, oldest first (ties by row id), at
    most ``limit`` of them, each with the asking client's public id and name.

    ``api_queries`` has no index on the number (migration 0010), so the log is read by client and period
    through the ``(client_id, asked_at)`` index, one range per client, and the number is checked on the rows
    of those ranges: the cost follows the period read, not the size of the log, so the caller bounds the
    period. Oldest first, so that a listing cut by ``limit`` goes on with ``since`` set to the time of its
    last row (``since`` is inclusive: a row at that very time may come twice, but none is missed).

    The clients' row ids are read first and sent as values (``client_id IN (1, 2, ...)``), not as
    ``IN (SELECT id FROM api_clients)``: PostgreSQL plans the subquery as a join whose size it does not
    know and, on a year of log (500,000 rows, 8 clients, 30 days asked), chose a parallel sequential scan of
    the whole table (6,263 pages read, 78 ms); with the values it reads the index ranges (686 pages,
    6 ms). Plans checked (EXPLAIN, EXPLAIN QUERY PLAN; SQLite 3.40), with and without ANALYZE:

    - SQLite: ``SEARCH api_queries USING INDEX ix_api_queries_client_at (client_id=? AND asked_at>? AND
      asked_at<?)``, ``SEARCH api_clients USING INTEGER PRIMARY KEY`` (or ``SCAN api_clients``, the few
      clients, once statistics exist), ``USE TEMP B-TREE FOR ORDER BY``.
    - PostgreSQL 15: ``Bitmap Index Scan on ix_api_queries_client_at``, ``Index Cond: client_id = ANY
      ('{1,...,8}') AND asked_at >= ... AND asked_at < ...``, then ``Bitmap Heap Scan on api_queries``
      with ``Filter: msisdn = ...``, a nested loop to ``api_clients`` and a sort. Only a period that is
      most of the log (366 days of a one-year log) makes it scan the table, which is then the cheaper way
      to read that period.
    """
    client_pks = session.scalars(select(RelyingParty.id)).all()
    stmt = (
        select(
            RelyingParty.client_id,
            RelyingParty.name,
            ApiQuery.api,
            ApiQuery.answer,
            ApiQuery.status,
            ApiQuery.asked_at,
        )
        .join(RelyingParty, RelyingParty.id == ApiQuery.client_id)
        .where(
            ApiQuery.client_id.in_(client_pks),
            ApiQuery.asked_at >= since,
            ApiQuery.asked_at < until,
            ApiQuery.msisdn == msisdn,
        )
        .order_by(ApiQuery.asked_at, ApiQuery.id)
        .limit(limit)
    )
    return [QueryAbout(*row) for row in session.execute(stmt)]
