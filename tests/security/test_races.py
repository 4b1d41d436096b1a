"""Races: the same proof or the same line hit from several connections at once, with real commits.

Each test runs on a private, freshly migrated database (SQLite file or PostgreSQL schema) and starts its
attempts on separate threads, each with its own session, committing like a request does. A check that is
right one request at a time must stay right when requests overlap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.identity import otp
from simkeep.identity.application import CheckOutcome, OnlineApplication
from simkeep.identity.assurance import Assurance
from simkeep.identity.service import Evidence
from simkeep.lines import protection
from simkeep.models import Channel, OneTimeCode, ProofAttempt, ReplacementOrder, Subscriber
from simkeep.replacements import service as orders
from tests import factories
from tests.online import last_code
from tests.security.conftest import small_jpeg

PASSED = [CheckOutcome(kind, "pass") for kind in ("document", "ocr", "face")]


def line_actor(line_id: int) -> Actor:
    """A holder signed in to a line with the service password."""
    return Actor(
        kind="line",
        label=f"line:{line_id}",
        line_id=line_id,
        assurance=Assurance.MEDIUM,
        proof_methods=("service_password",),
    )


def race(factory: Callable[[], Session], n: int, work: Callable[[Session, int], str]) -> Counter[str]:
    """Run ``work`` on ``n`` threads released together, each with its own session; count the outcomes
    (the domain error's code for a refusal)."""
    start = Barrier(n)

    def one(i: int) -> str:
        session = factory()
        try:
            start.wait(timeout=30)
            outcome = work(session, i)
            session.commit()
            return outcome
        except DomainError as exc:
            if exc.keep_changes:
                session.commit()
            else:
                session.rollback()
            return exc.code
        finally:
            session.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return Counter(pool.map(one, range(n)))


class TestOneCodeOneUse:
    """A one-time code seen over the holder's shoulder, raced against the holder's own use."""

    def test_code_changes_the_contacts_once(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """Eight simultaneous contact changes carry the same valid code, each to a different address:
        exactly one goes through; the others fail as wrong codes (recorded), the last ones finding
        self-service locked by then; the contact is the one address of the winner."""
        _, settings = fresh
        with fresh_session_factory() as setup:
            h = factories.holder(setup, settings)
            otp.send_code(
                setup,
                settings,
                line=h.line,
                subscriber=h.subscriber,
                purpose="contact.change",
                channel="email",
            )
            setup.commit()
            line_id, msisdn, subscriber_id = h.line.id, h.msisdn, h.subscriber.id
        code = last_code(Path(settings.otp_outbox_dir))
        actor = Actor(
            kind="line",
            label=f"line:{line_id}",
            line_id=line_id,
            assurance=Assurance.MEDIUM,
            proof_methods=("service_password",),
        )

        def change(session: Session, i: int) -> str:
            protection.change_contacts(
                session,
                settings,
                actor=actor,
                msisdn=msisdn,
                contact_email=f"racer{i}@example.org",
                contact_phone=None,
                evidence=Evidence(one_time_code=code),
            )
            return "changed"

        outcomes = race(fresh_session_factory, 8, change)
        assert outcomes["changed"] == 1
        assert set(outcomes) - {"changed"} <= {"PROOF_FAILED", "SELF_SERVICE_LOCKED"}
        assert outcomes["PROOF_FAILED"] >= 1
        with fresh_session_factory() as check:
            email = check.get(Subscriber, subscriber_id).contact_email  # type: ignore[union-attr]
            assert email is not None and email.startswith("racer")
            codes = check.scalars(select(OneTimeCode).where(OneTimeCode.line_id == line_id)).all()
            assert [c.consumed_at is not None for c in codes] == [True]
            failed = check.scalars(
                select(ProofAttempt).where(ProofAttempt.line_id == line_id, ProofAttempt.passed.is_(False))
            ).all()
            assert len(failed) == outcomes["PROOF_FAILED"]


class TestSimultaneousApplications:
    """Two applications for one line at the same moment, on the two online channels."""

    def test_mail_and_esim_at_once_make_one_order(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """An attacker fires an eSIM application (instant, no parcel) while the holder's mail application
        is being submitted, each with its own valid code and uploads: one order is created, the other is
        refused (one open order per line, and the online cool-down), so at most one new SIM can follow."""
        _, settings = fresh
        applications: list[OnlineApplication] = []
        with fresh_session_factory() as setup:
            h = factories.holder(setup, settings)
            for _ in range(2):
                refs = [otp_upload(setup, settings, h.line.id, kind) for kind in ("document_photo", "selfie")]
                _, code = otp.issue_code(
                    setup,
                    settings,
                    line=h.line,
                    subscriber=h.subscriber,
                    purpose="replacement.submit",
                    channel="email",
                )
                applications.append(OnlineApplication(factories.DOCUMENT, refs[0], refs[1], code))
            setup.commit()
            line_id, msisdn = h.line.id, h.msisdn
        # A new code retires the one before, so both racers carry the live (second) code.
        shared = applications[1].one_time_code
        channels = [Channel.ONLINE_MAIL, Channel.ESIM]

        def submit(session: Session, i: int) -> str:
            app = applications[i]
            orders.submit(
                session,
                settings,
                actor=line_actor(line_id),
                msisdn=msisdn,
                channel=channels[i],
                evidence=Evidence(),
                application=OnlineApplication(app.document_number, app.document_photo, app.selfie, shared),
                checks=PASSED,
            )
            return "created"

        outcomes = race(fresh_session_factory, 2, submit)
        assert outcomes["created"] == 1
        assert sum(outcomes.values()) == 2
        with fresh_session_factory() as check:
            made = check.scalars(select(ReplacementOrder).where(ReplacementOrder.line_id == line_id)).all()
            assert len(made) == 1


def otp_upload(session: Session, settings: Settings, line_id: int, kind: str) -> str:
    """An upload of ``kind`` for the line (a small plain image; the checks are given as passed)."""
    from simkeep.identity.evidence import store_upload

    row = store_upload(
        session,
        settings,
        actor=line_actor(line_id),
        kind=kind,
        data=small_jpeg(),
        declared_type="image/jpeg",
    )
    return row.reference
