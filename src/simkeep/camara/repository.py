"""Queries of the CAMARA domain: relying-party clients, recorded queries, numbers and their history,
subscriptions and the API workers that share client rates."""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby, pairwise
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, Select, String, any_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from simkeep.db.base import UTCDateTime
from simkeep.models import (
    ApiQueryBatch,
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
    through the (client_id, last_at) index.

    A batch counts whole at its last query's time. Its queries were asked within one flush (about a second)
    and on one UTC day, so a day's total is exact, and counts taken over adjoining periods add up to the
    count over their union (the quota's settled and recent parts never count a batch twice or miss one).
    """
    stmt = select(func.coalesce(func.sum(ApiQueryBatch.answered), 0)).where(
        ApiQueryBatch.client_id == client_pk, ApiQueryBatch.last_at >= since
    )
    if until is not None:
        stmt = stmt.where(ApiQueryBatch.last_at < until)
    return int(session.scalar(stmt) or 0)


#: (client_id, api, msisdn, answer, status, asked_us): asked_us is microseconds since the epoch (UTC).
QueryRow = tuple[int, str, str | None, str, int, int]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400_000_000
#: Longest answer kept for a query.
ANSWER_MAX = 200


def insert_queries(session: Session, rows: Sequence[QueryRow]) -> None:
    """Write recorded queries ``(client_id, api, msisdn, answer, status, asked_us)``: one
    :class:`ApiQueryBatch` row per client and UTC day, its queries in the order asked (ties in the order
    given; an answer kept to its first :data:`ANSWER_MAX` characters), in one statement.

    Runs in the recorder's thread beside the event loop, so it does no Python work per query: the rows are
    grouped, ordered and picked apart by C-level ``sorted``/``map``/``itemgetter``, and the JSON is made
    :data:`JSON_CHUNK` queries at a time with the interpreter lock handed back between chunks (one
    ``json.dumps`` of a second's queries held the lock, and stalled every answer in flight, for 10-20 ms).
    """
    if not rows:
        return
    values = [_batch_values(client_pk, group) for client_pk, group in _groups(rows)]
    session.execute(insert(ApiQueryBatch), values)


_CLIENT = itemgetter(0)
_ASKED = itemgetter(5)
_STATUS = itemgetter(4)
_ANSWER = itemgetter(3)
_ENTRY = itemgetter(1, 2, 3, 4, 5)
#: Queries turned into JSON at a time by :func:`insert_queries`.
JSON_CHUNK = 1000


def _groups(rows: Sequence[QueryRow]) -> Iterator[tuple[int, list[QueryRow]]]:
    """The rows by client and UTC day, each group in the order asked (a stable sort: ties keep theirs)."""
    if len(set(map(_CLIENT, rows))) == 1:
        by_client: list[tuple[int, list[QueryRow]]] = [(rows[0][0], list(rows))]
    else:
        by_client = [(pk, list(group)) for pk, group in groupby(sorted(rows, key=_CLIENT), key=_CLIENT)]
    for client_pk, given in by_client:
        group, asked = given, list(map(_ASKED, given))
        if asked != sorted(asked):
            group = sorted(given, key=_ASKED)
            asked = list(map(_ASKED, group))
        first_day, last_day = asked[0] // _DAY_US, asked[-1] // _DAY_US
        cuts = [bisect_left(asked, day * _DAY_US) for day in range(first_day + 1, last_day + 1)]
        for start, stop in pairwise([0, *cuts, len(group)]):
            if start < stop:
                yield client_pk, group[start:stop]


def _batch_values(client_pk: int, group: list[QueryRow]) -> dict[str, Any]:
    entries: list[tuple[Any, ...]] = list(map(_ENTRY, group))
    if max(map(len, map(_ANSWER, group))) > ANSWER_MAX:
        entries = [
            (api, msisdn, answer[:ANSWER_MAX], status, us) for api, msisdn, answer, status, us in entries
        ]
    parts = []
    for start in range(0, len(entries), JSON_CHUNK):
        if start:
            time.sleep(0)  # hand the interpreter lock to the event loop between chunks
        text_ = json.dumps(entries[start : start + JSON_CHUNK], ensure_ascii=False, separators=(",", ":"))
        parts.append(text_[1:-1])
    return {
        "client_id": client_pk,
        "first_at": _from_us(group[0][5]),
        "last_at": _from_us(group[-1][5]),
        "queries": len(group),
        "answered": len(group) - list(map(_STATUS, group)).count(429),
        "entries": "[" + ",".join(parts) + "]",
    }


class LoggedQuery(NamedTuple):
    """One recorded query, unpacked from its batch."""

    batch_id: int
    client_id: int
    api: str
    msisdn: str | None
    answer: str
    status: int
    asked_at: datetime


def logged_queries(session: Session, *, client_pks: Sequence[int] | None = None) -> list[LoggedQuery]:
    """Every recorded query (of these clients), unpacked from its batch, oldest first, ties in the order
    written. For reading the whole log (tests, an export); a holder's privacy request reads one period with
    :func:`queries_about`."""
    stmt = select(ApiQueryBatch).order_by(ApiQueryBatch.first_at, ApiQueryBatch.id)
    if client_pks is not None:
        stmt = stmt.where(ApiQueryBatch.client_id.in_(client_pks))
    found = [
        LoggedQuery(batch.id, batch.client_id, api, msisdn, answer, status, _from_us(asked_us))
        for batch in session.scalars(stmt)
        for api, msisdn, answer, status, asked_us in json.loads(batch.entries)
    ]
    found.sort(key=lambda q: (q.asked_at, q.batch_id))  # stable: a batch's own order within a microsecond
    return found


def _from_us(asked_us: int) -> datetime:
    """An aware UTC time from microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=asked_us)


def _to_us(at: datetime) -> int:
    """Microseconds since the epoch of an aware time."""
    delta = at.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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
    """The recorded queries about ``msisdn`` asked in ``[since, until)``, oldest first (ties in the order
    written), at most ``limit`` of them, each with the asking client's public id and name.

    The log is packed (one row per client and flush, :class:`ApiQueryBatch`) and has no index on the number:
    it is read by client and period through the ``(client_id, last_at)`` index, one range per client, and
    the batches of those ranges are unpacked in the database (``json_each`` on SQLite,
    ``json_array_elements`` on PostgreSQL) to keep the queries about the number: the cost follows the period
    read, not the size of the log, so the caller bounds the period. Oldest first, so that a listing cut by
    ``limit`` goes on with ``since`` set to the time of its last row (``since`` is inclusive: a row at that
    very time may come twice, but none is missed).

    The clients' row ids are sent as values (``client_id IN (1, 2, ...)``), not as a subquery: PostgreSQL
    plans a subquery as a join whose size it does not know and chose a parallel scan of the whole table.
    """
    clients = {rp.id: (rp.client_id, rp.name) for rp in session.scalars(select(RelyingParty))}
    if not clients:
        return []
    if session.get_bind().dialect.name == "postgresql":
        unpack = "json_array_elements(CAST(b.entries AS json)) WITH ORDINALITY AS e(value, n)"
        field, position = "e.value->>{}", "e.n"
    else:
        unpack, field, position = "json_each(b.entries) AS e", "json_extract(e.value, '$[{}]')", "e.key"
    asked = f"CAST({field.format(4)} AS BIGINT)"
    columns = f"{field.format(0)}, {field.format(2)}, CAST({field.format(3)} AS INTEGER), {asked}"
    sql = text(
        f"SELECT b.client_id, {columns} FROM api_query_batches AS b, {unpack} "  # noqa: S608 - constants
        "WHERE b.client_id IN :clients AND b.last_at >= :since AND b.first_at < :until "
        f"AND {field.format(1)} = :msisdn AND {asked} >= :since_us AND {asked} < :until_us "
        f"ORDER BY {asked}, b.id, {position} LIMIT :limit"
    ).bindparams(
        bindparam("clients", expanding=True),
        bindparam("since", type_=UTCDateTime()),
        bindparam("until", type_=UTCDateTime()),
    )
    params = {
        "clients": list(clients),
        "since": since,
        "until": until,
        "msisdn": msisdn,
        "since_us": _to_us(since),
        "until_us": _to_us(until),
        "limit": limit,
    }
    found = []
    for client_pk, api, answer, status, asked_us in session.execute(sql, params):
        client_id, name = clients[client_pk]
        found.append(QueryAbout(client_id, name, api, answer, int(status), _from_us(int(asked_us))))
    return found
