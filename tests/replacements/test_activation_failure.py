"""A failure in the middle of activation leaves the old SIM live and the order resumable."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.models import (
    EmbeddedHlrSubscriber,
    Line,
    OrderState,
    ReplacementOrder,
    Sim,
    SimChange,
    SimStatus,
)
from simkeep.network import operations
from simkeep.network.adapter import EmbeddedHlr, NetworkError
from simkeep.replacements import activation
from tests import factories


class FailingHlr(EmbeddedHlr):
    """The embedded HLR, failing when the number is given to the new IMSI (after it left the old one)."""

    def bind_number(self, imsi: str, msisdn: str) -> None:
        """Fail like an HLR that went away mid-move."""
        raise NetworkError("HLR connection lost")


class TestActivationFailure:
    """Injected network failure between taking the number off the old SIM and giving it to the new one."""

    @pytest.fixture
    def paid_store_order(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> tuple[Actor, str, int, int, int]:
        """A store order with its SIM assigned, ready to activate."""
        _, settings = fresh
        with fresh_session_factory() as s:
            ready = factories.ready_store_order(s, settings)
            s.commit()
            h = ready.holder
            return ready.clerk, ready.reference, h.line.id, h.sim.id, ready.new_sim.id

    def test_failure_leaves_old_sim_live_and_retry_completes(
        self,
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
        paid_store_order: tuple[Actor, str, int, int, int],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Nothing of the failed attempt is kept; a retry activates and records one SIM change."""
        _, settings = fresh
        clerk, ref, line_id, old_sim_id, new_sim_id = paid_store_order
        with fresh_session_factory() as s, monkeypatch.context() as patch:
            patch.setattr(operations, "network_for", lambda session, _settings=None: FailingHlr(session))
            with pytest.raises(NetworkError):
                activation.activate(s, settings, actor=clerk, reference=ref)
            s.rollback()

        with fresh_session_factory() as s:
            line = s.get(Line, line_id)
            old_sim, new_sim = s.get(Sim, old_sim_id), s.get(Sim, new_sim_id)
            assert line is not None and old_sim is not None and new_sim is not None
            assert line.sim_id == old_sim_id
            assert (old_sim.status, new_sim.status) == (SimStatus.ACTIVE, SimStatus.RESERVED)
            net_old = s.get(EmbeddedHlrSubscriber, old_sim.imsi)
            assert net_old is not None
            assert (net_old.msisdn, net_old.network_access_mode) == (line.msisdn, "cs+ps")
            assert s.get(EmbeddedHlrSubscriber, new_sim.imsi) is None
            assert s.query(SimChange).filter(SimChange.order_id.is_not(None)).count() == 0
            assert s.query(ReplacementOrder).one().state == OrderState.SIM_ASSIGNED

        with fresh_session_factory() as s:
            activation.activate(s, settings, actor=clerk, reference=ref)
            s.commit()

        with fresh_session_factory() as s:
            line = s.get(Line, line_id)
            assert line is not None
            assert line.sim_id == new_sim_id
            assert s.query(SimChange).filter(SimChange.order_id.is_not(None)).count() == 1
            assert s.query(ReplacementOrder).one().state == OrderState.ACTIVATED
            live = s.query(EmbeddedHlrSubscriber).filter_by(msisdn=line.msisdn).all()
            assert [e.network_access_mode for e in live] == ["cs+ps"]
