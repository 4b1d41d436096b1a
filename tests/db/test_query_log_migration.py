"""Revision 0013 packs the CAMARA query log already written (``api_queries``) into ``api_query_batches``, and
its downgrade unpacks it: nothing is lost either way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from simkeep.camara import clients, repository
from simkeep.config import Settings
from simkeep.db import migrate
from simkeep.db.base import utcnow
from simkeep.models import ApiQueryBatch

T0 = datetime(2026, 11, 30, 23, 59, 30, 123_456, tzinfo=UTC)
#: (client index, seconds after T0, number, answer, status), in the order they were logged.
LOGGED = [
    (0, 0.0, "+8613800000001", '{"swapped":false}', 200),
    (1, 0.5, None, "MISSING_IDENTIFIER", 422),
    (0, 10.0, "+8613800000002", '号码 "quoted"', 404),
    (0, 10.0, "+8613800000003", "TOO_MANY_REQUESTS", 429),  # the same microsecond: kept in this order
    (0, 45.0, "+8613800000001", '{"swapped":true}', 200),  # the next minute, and the next UTC day
]


def _clients(engine: Engine, settings: Settings) -> list[int]:
    with Session(engine) as session:
        made = [
            clients.create_client(session, settings, name=name, scopes=["sim-swap"]).client.id
            for name in ("Bank A", "Bank B")
        ]
        session.commit()
        return made


def _expected(pks: list[int]) -> list[tuple[int, str, str | None, str, int, datetime]]:
    return [
        (pks[c], "sim-swap.check", number, answer, status, T0 + timedelta(seconds=after))
        for c, after, number, answer, status in LOGGED
    ]


class TestMigration0013:
    """The query log's rows survive packing and unpacking."""

    def test_rows_logged_before_are_packed_then_unpacked(self, fresh: tuple[Engine, Settings]) -> None:
        """Per client and minute, in the order asked, with their counts; the downgrade gives the rows back."""
        engine, settings = fresh
        migrate.downgrade(engine, "0012")
        pks = _clients(engine, settings)
        with engine.begin() as conn:
            for client_id, api, msisdn, answer, status, asked_at in _expected(pks):
                conn.execute(
                    text(
                        "INSERT INTO api_queries (client_id, api, msisdn, answer, status, asked_at) "
                        "VALUES (:c, :api, :m, :answer, :status, :at)"
                    ).bindparams(at=asked_at if engine.dialect.name == "postgresql" else _sqlite(asked_at)),
                    {"c": client_id, "api": api, "m": msisdn, "answer": answer, "status": status},
                )
        migrate.upgrade(engine)
        assert migrate.drift(engine) == []
        with Session(engine) as session:
            unpacked = [
                (q.client_id, q.api, q.msisdn, q.answer, q.status, q.asked_at)
                for q in repository.logged_queries(session)
            ]
            assert unpacked == sorted(_expected(pks), key=lambda row: row[5])
            batches = session.query(ApiQueryBatch).order_by(ApiQueryBatch.first_at, ApiQueryBatch.id).all()
            shape = [(b.client_id, b.queries, b.answered, b.first_at, b.last_at) for b in batches]
            assert shape == [
                (pks[0], 3, 2, T0, T0 + timedelta(seconds=10)),
                (pks[1], 1, 1, T0 + timedelta(seconds=0.5), T0 + timedelta(seconds=0.5)),
                (pks[0], 1, 1, T0 + timedelta(seconds=45), T0 + timedelta(seconds=45)),
            ]
            about = repository.queries_about(
                session, "+8613800000001", since=T0 - timedelta(days=1), until=utcnow(), limit=10
            )
            assert [(q.client_name, q.answer, q.asked_at) for q in about] == [
                ("Bank A", '{"swapped":false}', T0),
                ("Bank A", '{"swapped":true}', T0 + timedelta(seconds=45)),
            ]
        migrate.downgrade(engine, "0012")
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT client_id, api, msisdn, answer, status FROM api_queries ORDER BY asked_at, id")
            ).all()
        assert [tuple(r) for r in rows] == [row[:5] for row in sorted(_expected(pks), key=lambda r: r[5])]
        migrate.upgrade(engine)


def _sqlite(at: datetime) -> str:
    """A time as SQLAlchemy stores it on SQLite (naive UTC, microseconds)."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
