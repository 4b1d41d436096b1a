"""Concurrent requests on a real database with real commits (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.identity import evidence, otp
from simkeep.identity.application import CheckOutcome, OnlineApplication
from simkeep.identity.assurance import Assurance
from simkeep.identity.service import Evidence
from simkeep.models import Channel, OrderState, PaymentMethod, ReplacementOrder, SimKind, SimStatus, StaffRole
from simkeep.replacements import online, service
from tests import factories
from tests.online import id_card_with_portrait, last_code, photo


def line_actor(line_id: int) -> Actor:
    """A holder signed in to a line with the service password."""
    return Actor(
        kind="line",
        label=f"line:{line_id}",
        line_id=line_id,
        assurance=Assurance.MEDIUM,
        proof_methods=("service_password",),
    )


def prepare_application(session: Session, settings: Settings, h: factories.Holder) -> OnlineApplication:
    """Real uploads (the same two photos for every holder) and a one-time code, through the services."""
    actor = line_actor(h.line.id)
    document = evidence.store_upload(
        session, settings, actor=actor, kind="document_photo", data=_images()[0], declared_type="image/jpeg"
    )
    selfie = evidence.store_upload(
        session, settings, actor=actor, kind="selfie", data=_images()[1], declared_type="image/jpeg"
    )
    otp.send_code(
        session, settings, line=h.line, subscriber=h.subscriber, purpose="replacement.submit", channel="email"
    )
    return OnlineApplication(
        factories.DOCUMENT, document.reference, selfie.reference, last_code(Path(settings.otp_outbox_dir))
    )


def _images() -> tuple[bytes, bytes]:
    return id_card_with_portrait(factories.DOCUMENT, photo("obama.jpg")), photo("obama2.jpg").read_bytes()


def real_checks(
    session: Session, settings: Settings, h: factories.Holder, application: OnlineApplication
) -> list[CheckOutcome]:
    """The automatic checks run once on the real photos (every holder here hands in the same two)."""
    uploads = online.load_uploads(session, settings, line_id=h.line.id, application=application)
    return online.automatic_checks(settings, document_type="cn_ric", application=application, uploads=uploads)


ADMIN = Actor(kind="staff", label="staff:admin", staff_user_id=2, role=StaffRole.ADMIN)


def run_concurrently(
    factory: Callable[[], Session], n: int, work: Callable[[Session, int], str]
) -> Counter[str]:
    """Run ``work`` ``n`` times on ``n`` threads, each with its own session, committing like a request."""

    def one(i: int) -> str:
        session = factory()
        try:
            outcome = work(session, i)
            session.commit()
            return outcome
        except DomainError as exc:
            session.rollback()
            return exc.code
        finally:
            session.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return Counter(pool.map(one, range(n)))


class TestConcurrentSubmissions:
    """Twenty applications for one line at the same moment."""

    def test_exactly_one_order_is_created(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """One submission wins; the other nineteen are REPLACEMENT_ALREADY_OPEN, and one order exists."""
        _, settings = fresh
        with fresh_session_factory() as setup:
            h = factories.holder(setup, settings)
            application = prepare_application(setup, settings, h)
            checks = real_checks(setup, settings, h, application)
            setup.commit()
            line_id, msisdn = h.line.id, h.msisdn

        def submit(session: Session, _: int) -> str:
            service.submit(
                session,
                settings,
                actor=line_actor(line_id),
                msisdn=msisdn,
                channel=Channel.ONLINE_MAIL,
                evidence=Evidence(),
                application=application,
                checks=checks,
            )
            return "created"

        outcomes = run_concurrently(fresh_session_factory, 20, submit)
        assert outcomes == Counter({"created": 1, "REPLACEMENT_ALREADY_OPEN": 19})
        with fresh_session_factory() as check:
            assert check.query(ReplacementOrder).count() == 1


class TestConcurrentAssignments:
    """Fifty paid orders compete for ten SIMs in the warehouse."""

    def test_each_sim_goes_to_one_order(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """Ten orders get a SIM each, forty are told NO_SIM_IN_STOCK, and no SIM is given twice."""
        _, settings = fresh
        refs: list[str] = []
        with fresh_session_factory() as setup:
            checks: list[CheckOutcome] = []
            for i in range(50):
                h = factories.holder(setup, settings)
                application = prepare_application(setup, settings, h)
                checks = checks or real_checks(setup, settings, h, application)
                order = service.submit(
                    setup,
                    settings,
                    actor=line_actor(h.line.id),
                    msisdn=h.msisdn,
                    channel=Channel.ONLINE_MAIL,
                    evidence=Evidence(),
                    application=application,
                    checks=checks,
                )
                assert order.state == OrderState.AWAITING_PAYMENT
                service.pay(
                    setup,
                    actor=line_actor(h.line.id),
                    reference=order.reference,
                    method=PaymentMethod.ONLINE,
                    payment_reference=f"PAY-{i}",
                )
                refs.append(order.reference)
            stock = [factories.sim(setup, kind=SimKind.PHYSICAL) for _ in range(10)]
            setup.commit()
            stock_ids = {s.id for s in stock}

        def assign(session: Session, i: int) -> str:
            service.assign_sim(session, actor=ADMIN, reference=refs[i])
            return "assigned"

        outcomes = run_concurrently(fresh_session_factory, 50, assign)
        assert outcomes == Counter({"assigned": 10, "NO_SIM_IN_STOCK": 40})
        with fresh_session_factory() as check:
            orders = check.query(ReplacementOrder).filter(ReplacementOrder.new_sim_id.is_not(None)).all()
            assert len(orders) == 10
            assert {o.new_sim_id for o in orders} == stock_ids
            assert all(o.state == OrderState.SIM_ASSIGNED for o in orders)
            from simkeep.models import Sim

            assert (
                check.query(Sim).filter(Sim.id.in_(stock_ids), Sim.status == SimStatus.RESERVED).count() == 10
            )
