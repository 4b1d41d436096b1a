"""Reconciliation of simkeep's record with the HLR, on both adapters and both databases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simkeep.audit.service import link_pending
from simkeep.config import Settings
from simkeep.models import (
    AuditEntry,
    EmbeddedHlrSubscriber,
    LineStatus,
    NetworkOperation,
    NetworkOpKind,
    NetworkOpStatus,
    SimStatus,
    SuspensionReason,
)
from simkeep.network.adapter import (
    EmbeddedHlr,
    NetworkAdapter,
    NetworkError,
    NetworkSubscriber,
    NetworkUnavailable,
    SimAuth,
)
from simkeep.network.reconcile import (
    ABSENT,
    HOLDS_NUMBER,
    NUMBER_MISSING,
    SHOULD_BE_BARRED,
    SHOULD_BE_LIVE,
    UNKNOWN_HOLDS_NUMBER,
    WRONG_NUMBER,
    compare,
    reconcile,
)
from tests import factories
from tests.network.osmo import OsmoHlrHandle

UNKNOWN_IMSI = "999990000000001"


@pytest.fixture(params=["embedded", "osmo-hlr"])
def network(request: pytest.FixtureRequest, db: Session) -> Iterator[NetworkAdapter]:
    """The adapter under test: the embedded table in the test's session, or the real osmo-hlr."""
    if request.param == "embedded":
        yield EmbeddedHlr(db)
    else:
        yield request.getfixturevalue("hlr")


def mirror(db: Session, network: NetworkAdapter) -> None:
    """Make the adapter hold what the embedded table (filled by the factories) holds."""
    if isinstance(network, EmbeddedHlr):
        return
    for row in db.scalars(select(EmbeddedHlrSubscriber)):
        network.provision(row.imsi)
        if row.msisdn:
            network.bind_number(row.imsi, row.msisdn)
        network.set_barred(row.imsi, barred=row.network_access_mode == "none")


class World:
    """One line of each kind simkeep knows, in agreement with the HLR."""

    def __init__(self, db: Session, settings: Settings, network: NetworkAdapter) -> None:
        self.active = factories.holder(db, settings)
        self.suspended = factories.holder(db, settings)
        self.suspended.line.status = LineStatus.SUSPENDED
        self.suspended.line.suspension_reason = SuspensionReason.LOST
        self.suspended.sim.status = SimStatus.SUSPENDED
        self.recycled = factories.holder(db, settings)
        self.recycled.line.status = LineStatus.RECYCLED
        self.recycled.sim.status = SimStatus.RETIRED
        self.retired = factories.sim(db, status=SimStatus.RETIRED)
        self.stock = factories.sim(db)
        db.flush()
        embedded = EmbeddedHlr(db)
        embedded.set_barred(self.suspended.sim.imsi, barred=True)
        embedded.remove(self.recycled.sim.imsi)
        embedded.provision(self.retired.imsi)
        embedded.set_barred(self.retired.imsi, barred=True)
        mirror(db, network)
        self.db = db
        self.network = network

    def kinds(self) -> set[tuple[str, str]]:
        """(kind, IMSI) of every difference found now."""
        return {(d.kind, d.imsi) for d in compare(self.db, self.network).differences}

    def audits(self) -> int:
        """Audit entries written by reconciliation."""
        link_pending(self.db)
        query = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "network.reconciled")
        return int(self.db.scalar(query) or 0)


@pytest.fixture
def world(db: Session, settings: Settings, network: NetworkAdapter) -> World:
    """Lines of each kind with the HLR in agreement."""
    return World(db, settings, network)


class TestCompare:
    def test_agreement_has_no_differences(self, world: World) -> None:
        """Active, suspended, recycled, retired and stock SIMs that agree with the HLR show nothing."""
        report = compare(world.db, world.network)
        assert report.differences == []
        assert report.checked_sims >= 4
        assert report.hlr_entries == 3

    def test_number_on_wrong_imsi(self, world: World) -> None:
        """An active line's number on a stock SIM: the line's SIM lacks it, the stock SIM must not hold it."""
        active, stock = world.active.sim.imsi, world.stock.imsi
        world.network.unbind_number(active)
        world.network.provision(stock)
        world.network.bind_number(stock, world.active.msisdn)
        report = compare(world.db, world.network)
        assert {(d.kind, d.imsi) for d in report.differences} == {
            (NUMBER_MISSING, active),
            (HOLDS_NUMBER, stock),
        }
        held = next(d for d in report.differences if d.kind == HOLDS_NUMBER)
        assert held.owner_line_id == world.active.line.id
        assert world.active.msisdn not in held.describe()  # masked
        assert "****" in held.describe()

    def test_wrong_barring(self, world: World) -> None:
        """A suspended line's SIM that is live and an active line's SIM that is barred are both reported."""
        world.network.set_barred(world.suspended.sim.imsi, barred=False)
        world.network.set_barred(world.active.sim.imsi, barred=True)
        assert world.kinds() == {
            (SHOULD_BE_BARRED, world.suspended.sim.imsi),
            (SHOULD_BE_LIVE, world.active.sim.imsi),
        }

    def test_absent_and_unknown(self, world: World) -> None:
        """A missing active SIM and an IMSI unknown to simkeep that holds a number are reported."""
        world.network.remove(world.active.sim.imsi)
        world.network.provision(UNKNOWN_IMSI)
        world.network.bind_number(UNKNOWN_IMSI, "+8613999999999")
        assert world.kinds() == {(ABSENT, world.active.sim.imsi), (UNKNOWN_HOLDS_NUMBER, UNKNOWN_IMSI)}

    def test_unknown_imsi_without_number_is_ignored(self, world: World) -> None:
        """An IMSI simkeep does not know that holds no number is left alone."""
        world.network.provision(UNKNOWN_IMSI)
        assert world.kinds() == set()

    def test_recycled_and_retired_sims(self, world: World) -> None:
        """A recycled line's SIM back and live, and a retired SIM live with another number, are reported."""
        recycled, retired = world.recycled.sim.imsi, world.retired.imsi
        world.network.provision(recycled)
        world.network.set_barred(retired, barred=False)
        world.network.bind_number(retired, "+8613999999998")
        assert world.kinds() == {
            (SHOULD_BE_BARRED, recycled),
            (SHOULD_BE_BARRED, retired),
            (HOLDS_NUMBER, retired),
        }

    def test_line_number_on_another_line_sim(self, world: World) -> None:
        """A suspended line's SIM holding the active line's number is a wrong number for both lines."""
        world.network.unbind_number(world.active.sim.imsi)
        world.network.unbind_number(world.suspended.sim.imsi)
        world.network.bind_number(world.suspended.sim.imsi, world.active.msisdn)
        assert world.kinds() == {
            (NUMBER_MISSING, world.active.sim.imsi),
            (WRONG_NUMBER, world.suspended.sim.imsi),
        }

    def test_imsi_with_pending_operation_left_out(self, world: World) -> None:
        """An IMSI a due, pending network operation is changing is not compared (counted as in flight)."""
        world.network.set_barred(world.active.sim.imsi, barred=True)
        world.db.add(
            NetworkOperation(
                kind=NetworkOpKind.BAR,
                status=NetworkOpStatus.PENDING,
                line_id=world.active.line.id,
                old_imsi=world.active.sim.imsi,
            )
        )
        world.db.flush()
        report = compare(world.db, world.network)
        assert report.differences == []
        assert report.in_flight == 1


class TestReconcileFix:
    def test_fix_repairs_everything_in_order(self, world: World) -> None:
        """Every planted difference is repaired, each with an audit entry, and nothing remains."""
        active, suspended, stock = world.active.sim.imsi, world.suspended.sim.imsi, world.stock.imsi
        world.network.unbind_number(active)
        world.network.provision(stock)
        world.network.bind_number(stock, world.active.msisdn)  # the number on the wrong IMSI
        world.network.set_barred(suspended, barred=False)
        world.network.unbind_number(suspended)
        world.network.provision(UNKNOWN_IMSI)
        world.network.bind_number(UNKNOWN_IMSI, world.suspended.msisdn)  # an unknown IMSI holds a number
        world.network.provision(world.recycled.sim.imsi)
        report = reconcile(world.db, world.network, fix=True, actor="test")
        assert len(report.differences) == 6
        assert report.failed == []
        assert report.remaining == []
        assert world.kinds() == set()
        steps = [r.step for r in report.repairs]
        assert steps.index("unbind") < steps.index("bind")
        assert world.audits() == len(report.repairs)
        a, s, st = world.network.lookup(active), world.network.lookup(suspended), world.network.lookup(stock)
        assert a is not None
        assert s is not None
        assert st is not None
        assert (a.msisdn, a.live) == (world.active.msisdn, True)
        assert (s.msisdn, s.barred) == (world.suspended.msisdn, True)
        assert st.msisdn is None

    def test_fix_provisions_absent_sim(self, world: World) -> None:
        """An active line's SIM missing from the HLR is created, given its number and left live."""
        world.network.remove(world.active.sim.imsi)
        reconcile(world.db, world.network, fix=True)
        entry = world.network.lookup(world.active.sim.imsi)
        assert entry is not None
        assert (entry.msisdn, entry.live) == (world.active.msisdn, True)

    def test_access_taken_before_given(self, world: World) -> None:
        """A live retired SIM is barred before its number comes off; a missing suspended SIM is barred
        before it gets its number back."""
        retired, suspended = world.retired.imsi, world.suspended.sim.imsi
        world.network.set_barred(retired, barred=False)
        world.network.bind_number(retired, "+8613999999997")
        world.network.remove(suspended)
        report = reconcile(world.db, world.network, fix=True)
        assert [r.step for r in report.repairs if r.imsi == retired] == ["bar", "unbind"]
        assert [r.step for r in report.repairs if r.imsi == suspended] == ["provision", "bar", "bind"]
        entry = world.network.lookup(suspended)
        assert entry is not None
        assert (entry.msisdn, entry.barred) == (world.suspended.msisdn, True)
        assert report.remaining == []

    def test_without_fix_nothing_changes(self, world: World) -> None:
        """Without --fix the HLR and the audit log are untouched."""
        world.network.set_barred(world.active.sim.imsi, barred=True)
        report = reconcile(world.db, world.network)
        assert report.repairs == []
        assert report.remaining == report.differences
        assert world.audits() == 0
        entry = world.network.lookup(world.active.sim.imsi)
        assert entry is not None
        assert entry.barred

    def test_refused_repair_reported_and_others_done(self, world: World) -> None:
        """A repair the HLR refuses is reported; the other repairs still run; what failed remains."""
        world.network.remove(world.active.sim.imsi)
        world.network.set_barred(world.suspended.sim.imsi, barred=False)
        refusing = RefusesBind(world.network)
        report = reconcile(world.db, refusing, fix=True)
        assert [r.step for r in report.failed] == ["bind"]
        assert {(d.kind, d.imsi) for d in report.remaining} == {(NUMBER_MISSING, world.active.sim.imsi)}
        assert world.kinds() == {(NUMBER_MISSING, world.active.sim.imsi)}
        assert world.audits() == len(report.repairs) - 1


class RefusesBind:
    """A test double around a real adapter whose bind_number is always refused."""

    transactional: ClassVar[bool] = False

    def __init__(self, inner: NetworkAdapter) -> None:
        self.inner = inner

    def provision(self, imsi: str, auth: SimAuth | None = None) -> None:
        self.inner.provision(imsi, auth)

    def bind_number(self, imsi: str, msisdn: str) -> None:
        raise NetworkError("refused by the test double")

    def unbind_number(self, imsi: str) -> None:
        self.inner.unbind_number(imsi)

    def set_barred(self, imsi: str, *, barred: bool) -> None:
        self.inner.set_barred(imsi, barred=barred)

    def remove(self, imsi: str) -> None:
        self.inner.remove(imsi)

    def lookup(self, imsi: str) -> NetworkSubscriber | None:
        return self.inner.lookup(imsi)

    def subscribers(self) -> Iterator[NetworkSubscriber]:
        return self.inner.subscribers()


class TestReconcileHlrDown:
    def test_unreachable_hlr_raises(self, db: Session, settings: Settings, hlr_handle: OsmoHlrHandle) -> None:
        """With osmo-hlr down, reconcile raises NetworkUnavailable and writes no audit entry."""
        factories.holder(db, settings)
        adapter = hlr_handle.adapter(timeout=0.5)
        hlr_handle.kill()
        try:
            with pytest.raises(NetworkUnavailable):
                reconcile(db, adapter, fix=True)
        finally:
            adapter.close()
            hlr_handle.restart()
        count = db.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "network.reconciled")
        )
        assert count == 0
