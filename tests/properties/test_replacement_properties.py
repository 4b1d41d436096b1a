"""Properties of the replacement and loss workflows under random sequences of steps by random actors.

eSIM orders are submitted, paid, given a SIM, cancelled and expired like the others, but not activated: an
eSIM order activates only once the SM-DP+ reports its profile installed (``esim.service``), which needs the
ES2+ double and the worker; without it every eSIM activation here is refused (``ESIM_PROFILE_NOT_FOUND``),
and that refusal too must change nothing.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck
from hypothesis import settings as hyp_settings
from hypothesis.stateful import run_state_machine_as_test
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.models import (
    Channel,
    Line,
    LineStatus,
    OrderState,
    PaymentMethod,
    ReplacementOrder,
    SuspensionReason,
)
from tests.properties.invariants import all_violations
from tests.properties.machine import ReplacementMachine
from tests.properties.world import build_world

MACHINE_SETTINGS = hyp_settings(
    max_examples=30,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def machine_settings(settings: Settings) -> Settings:
    """The suite's settings with room for many one-time codes (their hourly limit has tests of its own)."""
    return settings.model_copy(update={"otp_sends_per_hour": 100_000})


def bind(db: Session, settings: Settings) -> type[ReplacementMachine]:
    """A machine class bound to this test's session, settings and freshly built world."""
    world = build_world(db, settings)
    db.flush()

    class Bound(ReplacementMachine):
        pass

    Bound.db = db
    Bound.settings = settings
    Bound.world = world
    Bound.stats = Counter()
    return Bound


class TestReplacementMachine:
    """Random sequences of submit, decide, pay, waive, assign, ship, deliver, activate, cancel, expire, loss
    report and reinstatement, by the holder, another holder, both stores' clerks, a reviewer, an admin and
    the system."""

    def test_invariants_hold_after_every_step(self, db: Session, settings: Settings) -> None:
        """After any sequence no line has two live SIMs or none, no SIM serves two lines, every activated
        order has exactly one SIM-change record, the HLR serves each number on its current SIM only (barred
        while suspended), the audit chain is whole, and every refused step changed nothing."""
        machine = bind(db, machine_settings(settings))
        run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)
        stats = machine.stats
        # Both refusals and accepted submissions happened (the scripted tests below show that the steps
        # reach activation; how often a random run does varies from run to run).
        assert sum(n for k, n in stats.items() if ":refused:" in k) > 0
        assert sum(n for k, n in stats.items() if k.startswith("submit_") and k.endswith(":ok")) > 0


class TestScriptedSequences:
    """The machine's own steps, in fixed sequences that must reach activation (so that the random runs
    exercise the real flows, not only refusals)."""

    def test_store_replacement_after_loss_reaches_activation(self, db: Session, settings: Settings) -> None:
        """Loss report, store application, cash, scanned SIM, activation: the line is active on the new SIM,
        its loss report closed, and every invariant holds at each step."""
        machine = bind(db, machine_settings(settings))()
        try:
            machine.report_loss(0, "fit", SuspensionReason.LOST, right_name=True)
            machine.everything_holds()
            ref = machine.submit_store(0, "fit", right_document=True)
            assert isinstance(ref, str)
            machine.pay(ref, "fit", PaymentMethod.CASH)
            machine.assign_sim(ref, "fit", "fit")
            machine.activate(ref, "clerk1", right_digits=True)  # another store's clerk cannot see it
            machine.everything_holds()
            machine.activate(ref, "fit", right_digits=True)
            machine.everything_holds()
            order = machine.order_row(ref)
            assert order.state == OrderState.ACTIVATED
            line = db.get(Line, order.line_id)
            assert line is not None and line.status == LineStatus.ACTIVE and line.sim_id == order.new_sim_id
            assert machine.stats["activate_store:refused:ORDER_NOT_FOUND"] == 1
        finally:
            machine.teardown()

    def test_online_mail_replacement_reaches_activation(self, db: Session, settings: Settings) -> None:
        """Online application (checks pass), online payment, warehouse SIM, parcel, delivery, activation by
        the holder with the ICCID digits (a wrong try first): the order ends activated, invariants hold."""
        machine = bind(db, machine_settings(settings))()
        try:
            ref = machine.submit_online(1, "fit", Channel.ONLINE_MAIL, "pass")
            assert isinstance(ref, str)
            machine.pay(ref, "fit", PaymentMethod.CASH)
            assert machine.order_row(ref).state == OrderState.SIM_ASSIGNED
            machine.ship(ref, "fit")
            machine.deliver(ref, "fit")
            machine.activate(ref, "fit", right_digits=False)
            machine.everything_holds()
            machine.activate(ref, "fit", right_digits=True)
            machine.everything_holds()
            assert machine.order_row(ref).state == OrderState.ACTIVATED
            assert machine.stats["activate_online_mail:refused:PROOF_FAILED"] == 1
        finally:
            machine.teardown()

    def test_sim_released_by_a_cancelled_order_can_be_used_again(
        self, db: Session, settings: Settings
    ) -> None:
        """A SIM a cancelled store order gave back to stock is scanned for the next order and assigned to it
        (the release says the SIM is back in stock, so it must be usable)."""
        machine = bind(db, machine_settings(settings))()
        try:
            first = machine.submit_store(0, "fit", right_document=True)
            assert isinstance(first, str)
            machine.pay(first, "fit", PaymentMethod.CASH)
            machine.assign_sim(first, "fit", "fit")
            sim_id = machine.order_row(first).new_sim_id
            machine.cancel(first, "fit")
            assert machine.stats["cancel:ok"] == 1
            second = machine.submit_store(1, "fit", right_document=True)
            assert isinstance(second, str)
            machine.pay(second, "fit", PaymentMethod.CASH)
            machine.assign_sim(second, "fit", "fit")  # the first SIM in stock: the one given back
            assert machine.order_row(second).new_sim_id == sim_id
        finally:
            machine.teardown()

    def test_example_rolls_back_to_the_same_world(self, db: Session, settings: Settings) -> None:
        """What one example did is gone when it ends: the next starts with no orders and live lines."""
        bound = bind(db, machine_settings(settings))
        machine = bound()
        ref = machine.submit_store(0, "fit", right_document=True)
        assert isinstance(ref, str)
        machine.teardown()
        assert db.scalars(select(ReplacementOrder)).all() == []
        assert not all_violations(db)
