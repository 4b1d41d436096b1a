"""Running migrations and checking that models and migrations agree (``alembic check``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, UniqueConstraint, inspect

import simkeep.models  # noqa: F401 - registers every table on the metadata
from simkeep.db.base import Base

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at simkeep's migration tree."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest)."""
    _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to ``revision`` (data of later revisions' tables is dropped)."""
    _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    """Run ``step`` (upgrade or downgrade) to ``revision`` in one transaction.

    On SQLite, foreign keys are switched off while migrating (as SQLite's ALTER TABLE documentation asks):
    a batch migration recreates a table, and dropping the old copy would otherwise trip the references to
    it. The references are checked before the migration commits; any violation rolls it back.
    """
    cfg = alembic_config()
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        raw = connection.connection.driver_connection if sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")  # outside any transaction, where SQLite honours it
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                step(cfg, revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        msg = f"migration left broken references: {broken[:5]}"
                        raise RuntimeError(msg)
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision in the migration tree."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def drift(engine: Engine) -> list[object]:
    """Differences between the models and a database built by the migrations; empty when they agree."""
    with engine.connect() as connection:
        ctx = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": connection.dialect.name == "sqlite"}
        )
        found: list[object] = list(compare_metadata(ctx, Base.metadata))
        if connection.dialect.name == "sqlite":
            found = _unique_indexes_as_constraints(found)
        return found + _collation_drift(connection) + _predicate_drift(connection)


def _unique_indexes_as_constraints(found: list[object]) -> list[object]:
    """``found`` less each pair of a SQLite unique index "to remove" and the model's unique constraint "to
    add" of the same name and columns: the same key. Migration 0022 made the numbers' keys such indexes on
    SQLite, where a constraint of ``CREATE TABLE`` cannot be dropped, so that a first lines import can drop
    and build them again (see :func:`simkeep.lines.importer.first_load`)."""

    def key(obj: Any) -> tuple[str, str, tuple[str, ...]]:
        return obj.table.name, str(obj.name), tuple(column.name for column in obj.columns)

    removed = {
        key(diff[1]): diff
        for diff in found
        if isinstance(diff, tuple) and diff[0] == "remove_index" and diff[1].unique
    }
    added = {
        key(diff[1]): diff
        for diff in found
        if isinstance(diff, tuple) and diff[0] == "add_constraint" and isinstance(diff[1], UniqueConstraint)
    }
    same = {id(diff) for k in removed.keys() & added.keys() for diff in (removed[k], added[k])}
    return [diff for diff in found if id(diff) not in same]


_COLLATE = re.compile(r'COLLATE "([^"]+)"')


def _collation_drift(connection: Connection) -> list[object]:
    """Columns whose collation differs between the models and the database (Alembic compares a collation
    only where both name one): ``("collation", table, column, in the database, in the models)``."""
    dialect = connection.dialect
    inspector = inspect(connection)
    found: list[object] = []
    for table in Base.metadata.sorted_tables:
        columns = inspector.get_columns(table.name)
        reflected = {c["name"]: getattr(c["type"], "collation", None) for c in columns}
        for column in table.columns:
            # compiled: an Enum's variant loses its collation when adapted to the dialect
            named = _COLLATE.search(column.type.compile(dialect=dialect))
            wanted = named.group(1) if named else None
            if column.name in reflected and reflected[column.name] != wanted:
                found.append(("collation", table.name, column.name, reflected[column.name], wanted))
    return found


_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _predicate_drift(connection: Connection) -> list[object]:
    """Partial indexes whose predicate differs between the models and the database (Alembic compares none):
    ``("index predicate", table, index, in the database, in the models)``.

    PostgreSQL gives a predicate back in its own form (``status IN ('a', 'b')`` as ``(status)::text =
    ANY (ARRAY['a'::character varying, ...])``), so two predicates agree when both are absent, or when both
    are present, name the same string literals in the same order, and the database's names every column
    the model's does. SQLite keeps the statement's text, compared with its spaces normalised.
    """
    dialect = connection.dialect.name
    inspector = inspect(connection)
    found: list[object] = []
    for table in Base.metadata.sorted_tables:
        reflected = {
            ix["name"]: _text_of(ix.get("dialect_options", {}).get(f"{dialect}_where"))
            for ix in inspector.get_indexes(table.name)
        }
        columns = {c.name for c in table.columns}
        for index in table.indexes:
            if index.name not in reflected:
                continue  # a missing index is Alembic's to report
            wanted = _text_of(index.dialect_options[dialect].get("where"))
            have = reflected[index.name]
            if not _same_predicate(have, wanted, columns, exact=dialect == "sqlite"):
                found.append(("index predicate", table.name, index.name, have, wanted))
    return found


def _text_of(predicate: object) -> str | None:
    return None if predicate is None else " ".join(str(predicate).split())


def _same_predicate(have: str | None, wanted: str | None, columns: set[str], *, exact: bool) -> bool:
    if have is None or wanted is None:
        return have is wanted
    if exact:
        return have == wanted
    named = [set(_WORD.findall(_LITERAL.sub("", text))) & columns for text in (have, wanted)]
    return _LITERAL.findall(have) == _LITERAL.findall(wanted) and named[1] <= named[0]
