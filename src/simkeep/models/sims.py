"""SIM inventory and the history of SIM changes."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ColumnElement, ForeignKey, Index, String, Text, literal_column, text
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type, identifier


class SimKind(enum.StrEnum):
    """A plastic SIM or an eSIM profile."""

    PHYSICAL = "physical"
    ESIM = "esim"


class SimStatus(enum.StrEnum):
    """Where a SIM is in its life, from stock to retirement."""

    IN_STOCK = "in_stock"
    RESERVED = "reserved"
    SHIPPED = "shipped"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    RETIRED = "retired"


class SimLocation(enum.StrEnum):
    """Where a SIM in stock is kept."""

    WAREHOUSE = "warehouse"
    STORE = "store"


class SimChangeChannel(enum.StrEnum):
    """How a number came to a SIM."""

    INITIAL = "initial"
    IMPORT = "import"
    STORE = "store"
    ONLINE_MAIL = "online_mail"
    ESIM = "esim"


#: The statuses of a SIM that is stock: on a shelf (in stock), held for an order (reserved) or on its way to
#: the holder (shipped). ``ix_sims_stock_pick`` holds these SIMs alone (migration 0021).
STOCK_STATUSES = (SimStatus.IN_STOCK, SimStatus.RESERVED, SimStatus.SHIPPED)
_STOCK_LITERALS = tuple(repr(str(s)) for s in STOCK_STATUSES)  # 'in_stock', ... as SQL literals
_STOCK_LIST = ", ".join(_STOCK_LITERALS)
#: The index's predicate. PostgreSQL's form compares as text, which is the form it gives back
#: (``pg_get_indexdef``), so that an index a first lines import drops and builds again is the same index.
_STOCK_PREDICATE = {"sqlite": f"status IN ({_STOCK_LIST})", "postgresql": f"status::text IN ({_STOCK_LIST})"}


class Sim(Base):
    """One SIM card or eSIM profile.

    ``ix_sims_stock_pick`` (status, kind, location, store_id, id) is partial: it holds the SIMs that are
    stock (:data:`STOCK_STATUSES`), which picking a SIM and the stock counts read, and not the active,
    suspended and retired ones, which are most of the table once the lines are migrated. A query uses it
    only where it names the predicate as the index does, in literals (:func:`is_stock`): SQLite matches the
    term, not its meaning, and a bound parameter matches nothing. Every line imported skips it: on
    PostgreSQL a first load of 1,000,000 lines no longer builds it for 1,000,000 active SIMs (2.3 s of the
    server's time), and a batch-by-batch import no longer inserts an entry per line.
    """

    __tablename__ = "sims"
    __table_args__ = (
        Index(
            "ix_sims_stock_pick",
            "status",
            "kind",
            "location",
            "store_id",
            "id",
            postgresql_with={"deduplicate_items": "off"},
            postgresql_where=text(_STOCK_PREDICATE["postgresql"]),
            sqlite_where=text(_STOCK_PREDICATE["sqlite"]),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    iccid: Mapped[str] = mapped_column(identifier(20), unique=True)
    imsi: Mapped[str] = mapped_column(identifier(15), unique=True)
    kind: Mapped[SimKind] = mapped_column(enum_type(SimKind, "sim_kind", bytewise=True))
    status: Mapped[SimStatus] = mapped_column(
        enum_type(SimStatus, "sim_status", bytewise=True), default=SimStatus.IN_STOCK
    )
    location: Mapped[SimLocation] = mapped_column(enum_type(SimLocation, "sim_location", bytewise=True))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    batch: Mapped[str] = mapped_column(String(64), default="")
    # The HLR's authentication data (K/OPc for Milenage, Ki for COMP128), sealed by the vault
    # (simkeep.sims.secrets); sent only to the HLR, never shown.
    auth_algorithm: Mapped[str | None] = mapped_column(String(16))
    auth_sealed: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def is_stock() -> ColumnElement[bool]:
    """``sims.status IN ('in_stock', 'reserved', 'shipped')``, in literals: the partial index's predicate,
    which a query must name for SQLite (and a generic PostgreSQL plan) to read ``ix_sims_stock_pick``."""
    return Sim.status.in_([literal_column(value) for value in _STOCK_LITERALS])


class SimChange(Base):
    """A number moved to a SIM: the history behind "when did this number's SIM last change"."""

    __tablename__ = "sim_changes"
    __table_args__ = (Index("ix_sim_changes_line_changed", "line_id", "changed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    old_sim_id: Mapped[int | None] = mapped_column(ForeignKey("sims.id"))
    new_sim_id: Mapped[int] = mapped_column(ForeignKey("sims.id"))
    changed_at: Mapped[datetime]
    channel: Mapped[SimChangeChannel] = mapped_column(enum_type(SimChangeChannel, "sim_change_channel"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("replacement_orders.id"), unique=True)
