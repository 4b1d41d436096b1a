"""Replacements, loss reports and recycling against a real osmo-hlr, through durable network operations.

Each test reads the HLR back. The HLR is killed between any two steps of a SIM move and restarted, and the
move then completes from the queued job: the number is never on two IMSIs, and on none only while a step
runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.identity.service import Evidence
from simkeep.jobs.worker import drain
from simkeep.loss import service as loss_service
from simkeep.models import (
    AuditEntry,
    Job,
    NetworkOperation,
    NetworkOpKind,
    NetworkOpStatus,
    OrderState,
    ReplacementOrder,
    SimChange,
    SuspensionReason,
)
from simkeep.network import operations
from simkeep.network.adapter import NetworkSubscriber, NetworkUnavailable, SimAuth
from simkeep.network.osmo_hlr import OsmoHlr
from simkeep.replacements import activation, service
from tests import factories
from tests.network.osmo import OSMO_HLR, OSMO_HLR_MISSING, OsmoHlrHandle, start_osmo_hlr

pytestmark = pytest.mark.skipif(OSMO_HLR is None, reason=OSMO_HLR_MISSING)


@pytest.fixture(scope="module")
def osmo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OsmoHlrHandle]:
    """One osmo-hlr for this module."""
    handle = start_osmo_hlr(tmp_path_factory.mktemp("osmo-hlr-replacements"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def hlr(osmo: OsmoHlrHandle) -> OsmoHlrHandle:
    """The running, emptied HLR."""
    if osmo.process is None or osmo.process.poll() is not None:
        osmo.start()
    osmo.wipe()
    return osmo


@pytest.fixture
def osmo_settings(fresh: tuple[Engine, Settings], hlr: OsmoHlrHandle) -> Settings:
    """The private database's settings, with osmo-hlr as the network."""
    return fresh[1].model_copy(
        update={
            "network_adapter": "osmo-hlr",
            "hlr_host": hlr.host,
            "hlr_ctrl_port": hlr.ctrl_port,
            "hlr_vty_port": hlr.vty_port,
            "hlr_timeout_s": 1.0,
        }
    )


def read(hlr: OsmoHlrHandle, imsi: str) -> NetworkSubscriber | None:
    """The HLR's entry for ``imsi``, read back over CTRL."""
    with contextlib.closing(hlr.adapter()) as adapter:
        return adapter.lookup(imsi)


@dataclass
class StoreOrder:
    """A paid store order with its new SIM assigned, and the line live on its old SIM in the HLR."""

    clerk: Actor
    reference: str
    line_id: int
    msisdn: str
    old_imsi: str
    new_imsi: str


@pytest.fixture
def store_order(
    osmo_settings: Settings, fresh_session_factory: Callable[[], Session], hlr: OsmoHlrHandle
) -> StoreOrder:
    """A store order ready to activate; the old SIM holds the number in the HLR."""
    with fresh_session_factory() as s:
        ready = factories.ready_store_order(s, osmo_settings)
        s.commit()
        h = ready.holder
        result = StoreOrder(ready.clerk, ready.reference, h.line.id, h.msisdn, h.sim.imsi, ready.new_sim.imsi)
    with contextlib.closing(hlr.adapter()) as adapter:
        adapter.provision(result.old_imsi)
        adapter.bind_number(result.old_imsi, result.msisdn)
        adapter.set_barred(result.old_imsi, barred=False)
    return result


def holders_of(hlr: OsmoHlrHandle, msisdn: str) -> list[NetworkSubscriber]:
    """Every IMSI the HLR gives ``msisdn`` to."""
    with contextlib.closing(hlr.adapter()) as adapter:
        return [e for e in adapter.subscribers() if e.msisdn == msisdn]


class TestStoreActivationOnOsmoHlr:
    """A store replacement moves the number in osmo-hlr, then records the SIM change."""

    def test_activation_moves_the_number_and_bars_the_old_sim(
        self,
        osmo_settings: Settings,
        fresh_session_factory: Callable[[], Session],
        hlr: OsmoHlrHandle,
        store_order: StoreOrder,
    ) -> None:
        """After the commit the order waits in activating; the run moves the number and activates it."""
        with fresh_session_factory() as s:
            activation.activate(s, osmo_settings, actor=store_order.clerk, reference=store_order.reference)
            s.commit()
            order = s.scalars(select(ReplacementOrder)).one()
            assert order.state == OrderState.ACTIVATING
            assert s.scalars(select(SimChange).where(SimChange.order_id.is_not(None))).all() == []
            done = operations.run_after_commit(s, osmo_settings)
            assert [op.kind for op in done] == [NetworkOpKind.MOVE]

        with fresh_session_factory() as s:
            order = s.scalars(select(ReplacementOrder)).one()
            assert order.state == OrderState.ACTIVATED
            assert s.scalars(select(SimChange).where(SimChange.order_id == order.id)).one()
            pending = s.scalars(select(NetworkOperation).where(NetworkOperation.status == "pending")).all()
            assert [(op.kind, op.old_imsi) for op in pending] == [
                (NetworkOpKind.REMOVE, store_order.old_imsi)
            ]
            assert pending[0].not_before is not None
            assert pending[0].not_before > utcnow() + timedelta(days=osmo_settings.hlr_old_sim_grace_days - 1)
        new, old = read(hlr, store_order.new_imsi), read(hlr, store_order.old_imsi)
        assert new is not None and (new.msisdn, new.barred) == (store_order.msisdn, False)
        assert old is not None and (old.msisdn, old.barred) == (None, True)

    def test_old_sim_is_removed_after_its_grace(
        self,
        osmo_settings: Settings,
        fresh_session_factory: Callable[[], Session],
        hlr: OsmoHlrHandle,
        store_order: StoreOrder,
    ) -> None:
        """The removal job runs only when due, and then deletes the old IMSI from the HLR."""
        with fresh_session_factory() as s:
            activation.activate(s, osmo_settings, actor=store_order.clerk, reference=store_order.reference)
            operations.commit_and_apply(s, osmo_settings)
        with fresh_session_factory() as s:
            drain(s, osmo_settings)  # the MOVE's safety-net job is due later, the removal even later
            s.commit()
        assert read(hlr, store_order.old_imsi) is not None
        with fresh_session_factory() as s:
            removal = s.scalars(select(NetworkOperation).where(NetworkOperation.kind == "remove")).one()
            operations.run(s, osmo_settings, op_id=removal.id)
            s.commit()
            assert removal.status == NetworkOpStatus.DONE
        assert read(hlr, store_order.old_imsi) is None
        assert [e.imsi for e in holders_of(hlr, store_order.msisdn)] == [store_order.new_imsi]


class _KillingHlr(OsmoHlr):
    """osmo-hlr, SIGKILLed by the test right after the adapter's ``after``-th change."""

    calls = 0
    after = 0
    handle: OsmoHlrHandle | None = None

    def _tick(self) -> None:
        cls = type(self)
        cls.calls += 1
        if cls.calls == cls.after and cls.handle is not None:
            cls.handle.kill()

    def provision(self, imsi: str, auth: SimAuth | None = None) -> None:
        """Provision, then maybe die."""
        super().provision(imsi, auth)
        self._tick()

    def set_barred(self, imsi: str, *, barred: bool) -> None:
        """Bar or unbar, then maybe die."""
        super().set_barred(imsi, barred=barred)
        self._tick()

    def unbind_number(self, imsi: str) -> None:
        """Unbind, then maybe die."""
        super().unbind_number(imsi)
        self._tick()

    def bind_number(self, imsi: str, msisdn: str) -> None:
        """Bind, then maybe die."""
        super().bind_number(imsi, msisdn)
        self._tick()


class TestHlrCrashBetweenSteps:
    """The HLR dies after each step of the move in turn; after its restart the queued job completes it."""

    @pytest.mark.parametrize("after", [1, 2, 3, 4])
    def test_move_resumes_after_hlr_restart(
        self,
        after: int,
        osmo_settings: Settings,
        fresh_session_factory: Callable[[], Session],
        hlr: OsmoHlrHandle,
        store_order: StoreOrder,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Killed after step ``after``: the order stays activating, then the job finishes the move."""
        _KillingHlr.calls, _KillingHlr.after, _KillingHlr.handle = 0, after, hlr

        def killing(session: Session, settings: Settings | None = None) -> OsmoHlr:
            assert settings is not None
            return _KillingHlr(
                settings.hlr_host,
                ctrl_port=settings.hlr_ctrl_port,
                vty_port=settings.hlr_vty_port,
                timeout=0.5,
            )

        with fresh_session_factory() as s, monkeypatch.context() as patch:
            patch.setattr(operations, "network_for", killing)
            activation.activate(s, osmo_settings, actor=store_order.clerk, reference=store_order.reference)
            assert operations.commit_and_apply(s, osmo_settings) == []
        with fresh_session_factory() as s:
            order = s.scalars(select(ReplacementOrder)).one()
            assert order.state == OrderState.ACTIVATING
            op = s.scalars(select(NetworkOperation)).one()
            assert op.status == NetworkOpStatus.PENDING
            assert op.last_error
        hlr.start()
        # Never on two IMSIs; on none only while the move is cut between unbind and bind.
        assert len(holders_of(hlr, store_order.msisdn)) <= 1

        with fresh_session_factory() as s:
            drain(s, osmo_settings, worker_id="test")  # the move's job waits for the request's head start
            s.commit()
            assert s.scalars(select(ReplacementOrder)).one().state == OrderState.ACTIVATING
            job = s.scalars(select(Job).where(Job.kind == operations.JOB_KIND)).one()
            job.run_at = utcnow() - timedelta(seconds=1)
            s.commit()
        with fresh_session_factory() as s:
            drain(s, osmo_settings, worker_id="test")
            s.commit()
        with fresh_session_factory() as s:
            assert s.scalars(select(ReplacementOrder)).one().state == OrderState.ACTIVATED
            assert len(s.scalars(select(SimChange).where(SimChange.order_id.is_not(None))).all()) == 1
        holders = holders_of(hlr, store_order.msisdn)
        assert [(e.imsi, e.barred) for e in holders] == [(store_order.new_imsi, False)]
        old = read(hlr, store_order.old_imsi)
        assert old is not None and old.barred

    def test_hlr_down_at_activation_keeps_order_activating(
        self,
        osmo_settings: Settings,
        fresh_session_factory: Callable[[], Session],
        hlr: OsmoHlrHandle,
        store_order: StoreOrder,
    ) -> None:
        """With the HLR down nothing moves; the order can't be cancelled or lost; later it completes."""
        hlr.kill()
        with fresh_session_factory() as s:
            activation.activate(s, osmo_settings, actor=store_order.clerk, reference=store_order.reference)
            assert operations.commit_and_apply(s, osmo_settings) == []
        with fresh_session_factory() as s:
            op = s.scalars(select(NetworkOperation)).one()
            with pytest.raises(NetworkUnavailable):
                operations.run(s, osmo_settings, op_id=op.id)
            s.rollback()
            with pytest.raises(Exception, match="cannot run"):
                service.cancel(
                    s, actor=store_order.clerk, reference=store_order.reference, reason="changed mind"
                )
            s.rollback()
        hlr.start()
        with fresh_session_factory() as s:
            op = s.scalars(select(NetworkOperation)).one()
            operations.run(s, osmo_settings, op_id=op.id)
            s.commit()
            assert s.scalars(select(ReplacementOrder)).one().state == OrderState.ACTIVATED


class TestHlrRefusal:
    """A refusal that no retry heals puts the order back for staff and leaves the number on one IMSI."""

    def test_number_held_by_a_stranger_fails_the_move(
        self,
        osmo_settings: Settings,
        fresh_session_factory: Callable[[], Session],
        hlr: OsmoHlrHandle,
        store_order: StoreOrder,
    ) -> None:
        """The number is on a third IMSI: the move fails, the order goes back, staff see it audited."""
        stranger = "001019999999999"
        with contextlib.closing(hlr.adapter()) as adapter:
            adapter.unbind_number(store_order.old_imsi)
            adapter.provision(stranger)
            adapter.bind_number(stranger, store_order.msisdn)
        with fresh_session_factory() as s:
            activation.activate(s, osmo_settings, actor=store_order.clerk, reference=store_order.reference)
            operations.commit_and_apply(s, osmo_settings)
        with fresh_session_factory() as s:
            op = s.scalars(select(NetworkOperation)).one()
            assert op.status == NetworkOpStatus.FAILED
            assert op.last_error
            assert s.scalars(select(ReplacementOrder)).one().state == OrderState.SIM_ASSIGNED
            assert s.scalars(select(SimChange).where(SimChange.order_id.is_not(None))).all() == []
            audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "network.operation_failed")).all()
            assert len(audit) == 1
            with pytest.raises(operations.OperationNotRetryable):
                operations.retry(s, op_id=op.id, actor="cli")
        assert [e.imsi for e in holders_of(hlr, store_order.msisdn)] == [stranger]


def report_loss(s: Session, settings: Settings, order: StoreOrder, reason: SuspensionReason) -> None:
    """The clerk reports the line's SIM lost or stolen at the counter (in-person check)."""
    loss_service.report_loss(
        s,
        settings,
        actor=order.clerk,
        msisdn=order.msisdn,
        reason=reason,
        evidence=Evidence(in_person_document_number=factories.DOCUMENT),
    )


class TestLossOnOsmoHlr:
    """A loss report bars the SIM in osmo-hlr; a reinstatement unbars it."""

    def test_loss_bars_and_reinstatement_unbars(
        self,
        osmo_settings: Settings,
        fresh_session_factory: Callable[[], Session],
        hlr: OsmoHlrHandle,
        store_order: StoreOrder,
    ) -> None:
        """Each change reaches the HLR right after its commit."""
        with fresh_session_factory() as s:
            report_loss(s, osmo_settings, store_order, SuspensionReason.LOST)
            operations.commit_and_apply(s, osmo_settings)
        old = read(hlr, store_order.old_imsi)
        assert old is not None and (old.msisdn, old.barred) == (store_order.msisdn, True)

        with fresh_session_factory() as s:
            loss_service.reinstate(
                s,
                osmo_settings,
                actor=store_order.clerk,
                msisdn=store_order.msisdn,
                evidence=Evidence(in_person_document_number=factories.DOCUMENT),
            )
            operations.commit_and_apply(s, osmo_settings)
        old = read(hlr, store_order.old_imsi)
        assert old is not None and (old.msisdn, old.barred) == (store_order.msisdn, False)

    def test_loss_while_hlr_down_is_barred_once_it_is_back(
        self,
        osmo_settings: Settings,
        fresh_session_factory: Callable[[], Session],
        hlr: OsmoHlrHandle,
        store_order: StoreOrder,
        tmp_path: Path,
    ) -> None:
        """The report is accepted and suspended in simkeep at once; the bar follows from the job."""
        hlr.kill()
        with fresh_session_factory() as s:
            report_loss(s, osmo_settings, store_order, SuspensionReason.STOLEN)
            assert operations.commit_and_apply(s, osmo_settings) == []
        hlr.start()
        with fresh_session_factory() as s:
            op = s.scalars(select(NetworkOperation).where(NetworkOperation.kind == "bar")).one()
            operations.run(s, osmo_settings, op_id=op.id)
            s.commit()
        old = read(hlr, store_order.old_imsi)
        assert old is not None and old.barred


class TestRemovalOnOsmoHlr:
    """A recycled line's SIM is removed from osmo-hlr."""

    def test_remove_operation_deletes_the_subscriber(
        self,
        osmo_settings: Settings,
        fresh_session_factory: Callable[[], Session],
        hlr: OsmoHlrHandle,
        store_order: StoreOrder,
    ) -> None:
        """The REMOVE operation bars, unbinds and deletes; run twice it changes nothing more."""
        with fresh_session_factory() as s:
            op = operations.schedule(
                s,
                osmo_settings,
                kind=NetworkOpKind.REMOVE,
                line_id=store_order.line_id,
                old_imsi=store_order.old_imsi,
            )
            operations.commit_and_apply(s, osmo_settings)
            s.refresh(op)
            assert op.status == NetworkOpStatus.DONE
        assert read(hlr, store_order.old_imsi) is None
        assert holders_of(hlr, store_order.msisdn) == []
        with contextlib.closing(hlr.adapter()) as adapter:
            adapter.remove(store_order.old_imsi)  # idempotent


class TestRecyclingOnOsmoHlr:
    """A line recycled by the keep-alive sweep loses its SIM in osmo-hlr; an undo gives it back."""

    def test_recycling_removes_and_undo_restores(
        self,
        osmo_settings: Settings,
        fresh_session_factory: Callable[[], Session],
        hlr: OsmoHlrHandle,
        store_order: StoreOrder,
    ) -> None:
        """The sweep's recycle job schedules the removal, run after the job's commit; the undo binds again."""
        from simkeep.keepalive import service as keepalive
        from simkeep.models import Line

        with fresh_session_factory() as s:
            order = s.scalars(select(ReplacementOrder)).one()
            service.cancel(s, actor=store_order.clerk, reference=order.reference, reason="not needed")
            line = s.get(Line, store_order.line_id)
            assert line is not None
            line.last_activity_at = line.activated_at = utcnow() - timedelta(days=400)
            line.deadline_at = None  # the sweep computes the line afresh
            s.commit()
        with fresh_session_factory() as s:
            while True:
                counts = keepalive.sweep_batch(s, now=utcnow(), limit=100)
                if counts.checked + counts.computed == 0:
                    break
            s.commit()
            drain(s, osmo_settings, worker_id="test")
            operations.commit_and_apply(s, osmo_settings)
        assert read(hlr, store_order.old_imsi) is None
        assert holders_of(hlr, store_order.msisdn) == []

        with fresh_session_factory() as s:
            keepalive.restore_line(s, osmo_settings, msisdn=store_order.msisdn, actor=store_order.clerk)
            operations.commit_and_apply(s, osmo_settings)
        entry = read(hlr, store_order.old_imsi)
        assert entry is not None and (entry.msisdn, entry.barred) == (store_order.msisdn, False)
