"""A hypothesis state machine driving replacement orders and loss reports through the service layer.

Every step calls one service function, as one request would, in a savepoint: a success is kept, a domain
error is rolled back (or, for the errors that keep their record of a failed proof, kept) and must have
changed nothing else. After every step the invariants of :mod:`tests.properties.invariants` must hold.

Actors are named; ``"fit"`` stands for the actor the step is meant for (the holder of the order's line, the
clerk of its store, ...), so that sequences reach activation often, while every other name tries the step
as someone it is not meant for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any, ClassVar, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule
from sqlalchemy import select
from sqlalchemy.orm import Session, SessionTransaction

from simkeep.auth.actors import ANONYMOUS, Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import DomainError
from simkeep.identity.application import CheckOutcome, OnlineApplication
from simkeep.identity.evidence import store_upload
from simkeep.identity.otp import issue_code
from simkeep.identity.service import Evidence
from simkeep.loss import service as loss
from simkeep.models import (
    Channel,
    Line,
    OrderState,
    PaymentMethod,
    ReplacementOrder,
    Sim,
    SimStatus,
    StaffRole,
    Subscriber,
    SuspensionReason,
)
from simkeep.replacements import activation
from simkeep.replacements import service as orders
from tests import factories
from tests.helpers import snapshot
from tests.properties.invariants import all_violations
from tests.properties.world import World, small_jpeg

T = TypeVar("T")

WRONG_DOCUMENT = "110101199003074477"
#: Tables a refused request that keeps its record of a failed proof may add to, and nothing else.
PROOF_RECORDS = ("auth_tokens", "proof_attempts", "audit_log", "notifications", "one_time_codes")
#: The automatic checks' verdicts an online application may get (given, as the slow checks are not run).
VERDICTS: dict[str, list[CheckOutcome]] = {
    "pass": [CheckOutcome(k, "pass") for k in ("document", "ocr", "face")],
    "review": [
        CheckOutcome("document", "pass"),
        CheckOutcome("ocr", "pass"),
        CheckOutcome("face", "review", ("face_review_band",), 0.52),
    ],
    "reject": [
        CheckOutcome("document", "pass"),
        CheckOutcome("ocr", "pass"),
        CheckOutcome("face", "reject", ("face_mismatch",), 0.81),
    ],
}

STAFF_AND_SYSTEM = ("clerk0", "clerk1", "reviewer", "admin", "system")
EVERYONE = ("holder0", "holder1", *STAFF_AND_SYSTEM)
#: "fit" three times out of ten, so most sequences make progress and the rest try the wrong people.
ACTORS = st.sampled_from(("fit", "fit", "fit", *EVERYONE))
LINES = st.sampled_from((0, 0, 1))


class ReplacementMachine(RuleBasedStateMachine):
    """Random sequences of every replacement and loss step by every kind of actor."""

    db: ClassVar[Session]
    settings: ClassVar[Settings]
    world: ClassVar[World]
    stats: ClassVar[Counter[str]]

    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.example: SessionTransaction = self.db.begin_nested()
        self.serial = 0
        #: The database as it is now, when known (a refused step leaves it as it found it).
        self.before: dict[str, list[tuple[object, ...]]] | None = None

    def teardown(self) -> None:
        """Undo the whole example: the next one starts from the same world."""
        if self.example.is_active:
            self.example.rollback()
        self.db.expire_all()

    # ---- plumbing -------------------------------------------------------------------------------------

    def actor(self, name: str, *, fit: str) -> Actor:
        """The named actor; ``"fit"`` is replaced by ``fit``."""
        key = fit if name == "fit" else name
        return ANONYMOUS if key == "anonymous" else self.world.actors[key]

    def attempt(self, step: str, call: Callable[[], T]) -> T | None:
        """Run one step as a request would; a refusal must change nothing but its proof records."""
        before = self.before if self.before is not None else snapshot(self.db, exclude=())
        self.before = None
        savepoint = self.db.begin_nested()
        try:
            result = call()
        except DomainError as exc:
            refusal: DomainError | None = exc
            if exc.keep_changes:
                savepoint.commit()
            else:
                savepoint.rollback()
        else:
            refusal = None
        if refusal is not None:
            self.check_unchanged(step, refusal, before)
            return None
        savepoint.commit()
        self.stats[f"{step}:ok"] += 1
        return result

    def check_unchanged(
        self, step: str, refusal: DomainError, before: dict[str, list[tuple[object, ...]]]
    ) -> None:
        """A refused step left every table as it was (but its record of a failed proof, if it keeps one)."""
        exclude = PROOF_RECORDS if refusal.keep_changes else ()
        after = snapshot(self.db, exclude=exclude)
        changed = sorted(k for k in after if after[k] != before[k])
        assert not changed, f"{step} was refused ({refusal.code}) but changed {changed}"
        if not exclude:
            self.before = after  # nothing changed: the next step starts from this very state
        self.stats[f"{step}:refused:{refusal.code}"] += 1

    def prepare(self, call: Callable[[], T]) -> T | None:
        """A preceding request of the holder's own (an upload, a code sent): kept when it succeeds."""
        self.before = None
        savepoint = self.db.begin_nested()
        try:
            result = call()
        except DomainError:
            savepoint.rollback()
            return None
        savepoint.commit()
        return result

    def order_row(self, reference: str) -> ReplacementOrder:
        """The order, read afresh."""
        row = self.db.scalar(select(ReplacementOrder).where(ReplacementOrder.reference == reference))
        assert row is not None
        return row

    def fit_for(self, reference: str, *, staff: str = "clerk") -> str:
        """Who the step is meant for on this order: its holder, or its store's clerk / a reviewer."""
        order = self.order_row(reference)
        if staff == "reviewer":
            return "reviewer"
        if staff == "system":
            return "system"
        if staff == "holder" or (staff == "clerk" and order.channel != Channel.STORE):
            return f"holder{self.world.line_ids.index(order.line_id)}"
        return f"clerk{self.world.store_ids.index(order.store_id)}" if order.store_id else "admin"

    def code_for(self, actor: Actor, purpose: str) -> str | None:
        """A one-time code sent to the holder's registered contact for ``purpose``."""
        if actor.kind != "line" or actor.line_id is None:
            return None

        def send() -> str:
            line = self.db.get(Line, actor.line_id)
            assert line is not None
            holder = self.db.get(Subscriber, line.subscriber_id)
            assert holder is not None
            _row, code = issue_code(
                self.db, self.settings, line=line, subscriber=holder, purpose=purpose, channel="email"
            )
            return code

        return self.prepare(send)

    # ---- submitting -----------------------------------------------------------------------------------

    @rule(target=orders, line=LINES, who=ACTORS, right_document=st.booleans())
    def submit_store(self, line: int, who: str, right_document: bool) -> Any:
        """A clerk takes an application at the counter after checking the document in person."""
        actor = self.actor(who, fit="clerk0")
        document = factories.DOCUMENT if right_document else WRONG_DOCUMENT
        order = self.attempt(
            "submit_store",
            lambda: orders.submit(
                self.db,
                self.settings,
                actor=actor,
                msisdn=self.world.msisdns[line],
                channel=Channel.STORE,
                evidence=Evidence(in_person_document_number=document),
            ),
        )
        return multiple() if order is None else order.reference

    @rule(
        target=orders,
        line=LINES,
        who=ACTORS,
        channel=st.sampled_from((Channel.ONLINE_MAIL, Channel.ESIM)),
        verdict=st.sampled_from(tuple(VERDICTS)),
    )
    def submit_online(self, line: int, who: str, channel: Channel, verdict: str) -> Any:
        """The signed-in holder applies online with a document photo, a selfie and a one-time code."""
        actor = self.actor(who, fit=f"holder{line}")
        application = None
        if actor.kind == "line":

            def upload(kind: str) -> str:
                return store_upload(
                    self.db,
                    self.settings,
                    actor=actor,
                    kind=kind,
                    data=small_jpeg(),
                    declared_type="image/jpeg",
                ).reference

            refs = [self.prepare(partial(upload, kind)) for kind in ("document_photo", "selfie")]
            code = self.code_for(actor, "replacement.submit")
            if refs[0] and refs[1] and code:
                application = OnlineApplication(factories.DOCUMENT, refs[0], refs[1], code)
        order = self.attempt(
            f"submit_{channel}",
            lambda: orders.submit(
                self.db,
                self.settings,
                actor=actor,
                msisdn=self.world.msisdns[line],
                channel=channel,
                evidence=Evidence(),
                application=application,
                checks=VERDICTS[verdict],
            ),
        )
        return multiple() if order is None else order.reference

    # ---- deciding and paying --------------------------------------------------------------------------

    @rule(order=orders, who=ACTORS, approve=st.booleans())
    def decide(self, order: str, who: str, approve: bool) -> None:
        """A reviewer approves or rejects an order in review."""
        actor = self.actor(who, fit=self.fit_for(order, staff="reviewer"))
        self.attempt(
            "decide",
            lambda: orders.decide(
                self.db, actor=actor, reference=order, approve=approve, reason="checked the photos"
            ),
        )

    @rule(order=orders, who=ACTORS, method=st.sampled_from((PaymentMethod.CASH, PaymentMethod.ONLINE)))
    def pay(self, order: str, who: str, method: PaymentMethod) -> None:
        """The fee is paid: cash at the counter, or online by the holder."""
        row = self.order_row(order)
        fit = self.fit_for(order)
        if who == "fit":
            method = PaymentMethod.CASH if row.channel == Channel.STORE else PaymentMethod.ONLINE
        actor = self.actor(who, fit=fit)
        self.serial += 1
        self.attempt(
            "pay",
            lambda: orders.pay(
                self.db, actor=actor, reference=order, method=method, payment_reference=f"PAY-{self.serial}"
            ),
        )

    @rule(order=orders, who=ACTORS)
    def waive(self, order: str, who: str) -> None:
        """Staff waive the fee, with a reason."""
        row = self.order_row(order)
        actor = self.actor(who, fit=self.fit_for(order) if row.channel == Channel.STORE else "reviewer")
        self.attempt("waive", lambda: orders.waive(self.db, actor=actor, reference=order, reason="goodwill"))

    # ---- the SIM, the parcel --------------------------------------------------------------------------

    @rule(order=orders, who=ACTORS, pick=st.sampled_from(("fit", "other_store", "none")))
    def assign_sim(self, order: str, who: str, pick: str) -> None:
        """A SIM is given to a paid order: one a clerk scans from stock, or one from the warehouse."""
        row = self.order_row(order)
        actor = self.actor(who, fit=self.fit_for(order) if row.channel == Channel.STORE else "admin")
        iccid = None
        if pick != "none":
            own = self.world.store_ids.index(row.store_id) if row.store_id else 0
            store = self.world.store_ids[own if pick == "fit" else 1 - own]
            in_stock = self.db.scalars(
                select(Sim.iccid)
                .where(Sim.iccid.in_(self.world.store_iccids[store]), Sim.status == SimStatus.IN_STOCK)
                .order_by(Sim.id)
            ).first()
            iccid = in_stock or self.world.store_iccids[store][0]
        self.attempt(
            "assign_sim", lambda: orders.assign_sim(self.db, actor=actor, reference=order, iccid=iccid)
        )

    @rule(order=orders, who=ACTORS)
    def ship(self, order: str, who: str) -> None:
        """The warehouse hands the new SIM to the carrier."""
        actor = self.actor(who, fit="system")
        self.attempt("ship", lambda: orders.ship(self.db, self.settings, actor=actor, reference=order))

    @rule(order=orders, who=ACTORS)
    def deliver(self, order: str, who: str) -> None:
        """The parcel is delivered (as the carrier reports it, or as staff record it)."""
        actor = self.actor(who, fit="system")
        if actor.kind == "system":

            def carrier_reports() -> bool:
                orders.record_delivery(self.db, order=self.order_row(order))
                return True

            self.attempt("deliver", carrier_reports)
        else:
            self.attempt("deliver", lambda: orders.confirm_delivery(self.db, actor=actor, reference=order))

    @rule(order=orders)
    def parcel_returned(self, order: str) -> None:
        """The carrier brings the parcel back to the warehouse."""

        def carrier_returns() -> bool:
            orders.hold_for_return(self.db, order=self.order_row(order), tracking_number="T")
            return True

        self.attempt("parcel_returned", carrier_returns)

    @rule(order=orders, who=ACTORS)
    def reship(self, order: str, who: str) -> None:
        """Staff send a returned parcel again."""
        actor = self.actor(who, fit="system")
        self.attempt("reship", lambda: orders.reship(self.db, self.settings, actor=actor, reference=order))

    # ---- activation and the end of an order -----------------------------------------------------------

    @rule(order=orders, who=ACTORS, right_digits=st.booleans())
    def activate(self, order: str, who: str, right_digits: bool) -> None:
        """The new SIM is activated: the number moves to it and the old SIM dies in the same step."""
        row = self.order_row(order)
        actor = self.actor(who, fit=self.fit_for(order))
        digits = "000000"
        if right_digits and row.new_sim_id is not None:
            sim = self.db.get(Sim, row.new_sim_id)
            assert sim is not None
            digits = sim.iccid[-activation.ICCID_DIGITS :]
        self.attempt(
            f"activate_{row.channel}",
            lambda: activation.activate(
                self.db, self.settings, actor=actor, reference=order, iccid_digits=digits
            ),
        )

    @rule(order=orders, who=ACTORS)
    def cancel(self, order: str, who: str) -> None:
        """The holder or staff cancel an open order."""
        actor = self.actor(who, fit=self.fit_for(order, staff="holder"))
        self.attempt(
            "cancel", lambda: orders.cancel(self.db, actor=actor, reference=order, reason="changed my mind")
        )

    @rule(days=st.sampled_from((1, 1, 1, 31)))
    def expire(self, days: int) -> None:
        """The expiry job runs ``days`` from now: past the activation deadline it closes every open order and
        frees its SIM."""
        later = utcnow() + timedelta(days=days)
        self.attempt("expire", lambda: orders.expire_overdue(self.db, now=later))

    # ---- the next step, by the actor it is meant for ----------------------------------------------------

    def advance(self, order: str) -> None:
        """Take the order's next step as the actor it is meant for, so that random runs reach activation."""
        row = self.order_row(order)
        state = row.state
        if state == OrderState.IN_REVIEW:
            self.decide(order, "fit", approve=True)
        elif state == OrderState.AWAITING_PAYMENT:
            self.pay(order, "fit", PaymentMethod.CASH)
        elif state == OrderState.PAID:
            self.assign_sim(order, "fit", "fit")
        elif state == OrderState.SIM_ASSIGNED and row.channel == Channel.ONLINE_MAIL:
            self.ship(order, "fit")
        elif state == OrderState.SIM_ASSIGNED and row.channel == Channel.ESIM:
            # Without an SM-DP+ the profile is never installed: the holder gives up and cancels.
            self.cancel(order, "fit")
        elif state == OrderState.SHIPPED:
            self.deliver(order, "fit")
        elif state == OrderState.ON_HOLD:
            self.reship(order, "fit")
        else:
            self.activate(order, "fit", right_digits=True)

    @rule(order=orders)
    def next_step(self, order: str) -> None:
        """The order's next step, by the actor it is meant for."""
        self.advance(order)

    @rule()
    def newest_order_next_step(self) -> None:
        """The next step of the newest open order, so that flows are followed to their end."""
        newest = self.db.scalar(
            select(ReplacementOrder.reference)
            .where(ReplacementOrder.open_line_id.is_not(None))
            .order_by(ReplacementOrder.id.desc())
            .limit(1)
        )
        if newest is not None:
            self.advance(newest)

    # ---- loss reports ---------------------------------------------------------------------------------

    @rule(
        line=LINES,
        who=st.sampled_from(("fit", "fit", *EVERYONE, "anonymous")),
        reason=st.sampled_from((SuspensionReason.LOST, SuspensionReason.STOLEN)),
        right_name=st.booleans(),
    )
    def report_loss(self, line: int, who: str, reason: SuspensionReason, right_name: bool) -> None:
        """Someone reports the line's SIM lost or stolen: it is suspended at once."""
        actor = self.actor(who, fit=f"holder{line}")
        name = ("张伟" if line == 0 else "李娜") if right_name else "王五"
        self.attempt(
            "report_loss",
            lambda: loss.report_loss(
                self.db,
                self.settings,
                actor=actor,
                msisdn=self.world.msisdns[line],
                reason=reason,
                evidence=Evidence(real_name=name) if actor.kind == "anonymous" else Evidence(),
            ),
        )

    @rule(line=LINES, who=ACTORS, right_password=st.booleans())
    def reinstate(self, line: int, who: str, right_password: bool) -> None:
        """The holder (password and code) or a clerk (document in person) lifts the loss suspension."""
        actor = self.actor(who, fit=f"holder{line}")
        if actor.kind == "line":
            code = self.code_for(actor, "loss.reinstate")
            password = factories.PASSWORD if right_password else "not-the-password"
            evidence = Evidence(service_password=password, one_time_code=code)
        elif actor.has_role(StaffRole.CLERK):
            document = factories.DOCUMENT if right_password else WRONG_DOCUMENT
            evidence = Evidence(in_person_document_number=document)
        else:
            evidence = Evidence()
        self.attempt(
            "reinstate",
            lambda: loss.reinstate(
                self.db, self.settings, actor=actor, msisdn=self.world.msisdns[line], evidence=evidence
            ),
        )

    # ---- invariants -----------------------------------------------------------------------------------

    @invariant()
    def everything_holds(self) -> None:
        """No two live SIMs on a line, no live line without one, the HLR agrees, the audit chain is whole."""
        problems = all_violations(self.db)
        assert not problems, "\n".join(problems)
