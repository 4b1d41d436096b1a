"""The holder hears of every step of their order and of every SIM change, on their registered contacts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.jobs.worker import drain
from simkeep.models import Job, JobState, Language, Notification
from simkeep.notifications.transports import read_outbox
from tests import factories
from tests.replacements.conftest import World


def _post(world: World, path: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> Any:
    r = world.client.post(path, json=body or {}, headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


def store_replacement(world: World) -> str:
    """A replacement at the counter, from application to activation; its reference."""
    ref = _post(
        world,
        "/api/v1/replacements",
        world.clerk,
        {"msisdn": world.holder.msisdn, "channel": "store", "in_person_document_number": factories.DOCUMENT},
    )["reference"]
    _post(world, f"/api/v1/replacements/{ref}/payment", world.clerk, {"method": "cash"})
    _post(world, f"/api/v1/replacements/{ref}/sim", world.clerk, {"iccid": world.store_sims[0].iccid})
    _post(world, f"/api/v1/replacements/{ref}/activation", world.clerk)
    return str(ref)


def templates(db: Session) -> list[str]:
    db.expire_all()
    return list(db.scalars(select(Notification.template).order_by(Notification.id)))


class TestOrderNotifications:
    """Each state a holder cares about queues a notification in the same transaction."""

    def test_store_replacement_announces_submission_and_sim_change(self, world: World, db: Session) -> None:
        """Submitted and SIM changed are queued; nothing is sent before the worker runs."""
        store_replacement(world)
        assert templates(db) == ["order_submitted", "sim_changed"]
        assert {n.status for n in db.scalars(select(Notification))} == {"queued"}
        assert {j.state for j in db.scalars(select(Job))} == {JobState.QUEUED}

    def test_worker_sends_in_the_holders_language(
        self, world: World, db: Session, settings: Settings, outbox: Any
    ) -> None:
        """The worker renders each message in the holder's language and records it as sent."""
        world.holder.subscriber.language = Language.ZH_CN
        db.flush()
        ref = store_replacement(world)
        assert drain(db, settings) == 2
        sent = [m for m in read_outbox(outbox) if m.template == "sim_changed"]
        assert len(sent) == 1
        assert "换到新 SIM 卡" in sent[0].body
        assert ref in sent[0].body
        assert world.holder.msisdn not in sent[0].body  # the number is masked in messages
        assert {n.status for n in db.scalars(select(Notification))} == {"sent"}

    def test_sim_change_goes_to_every_contact_but_the_line(
        self, world: World, db: Session, settings: Settings, outbox: Any
    ) -> None:
        """With an e-mail and another phone, both are told; the line's own number never is."""
        world.holder.subscriber.contact_phone = "+8613911112222"
        db.flush()
        store_replacement(world)
        drain(db, settings)
        changed = [m for m in read_outbox(outbox) if m.template == "sim_changed"]
        assert sorted((m.channel, m.to) for m in changed) == [
            ("email", world.holder.subscriber.contact_email),
            ("sms", "+8613911112222"),
        ]

    def test_contact_phone_equal_to_the_line_is_skipped(
        self, world: World, db: Session, settings: Settings, outbox: Any
    ) -> None:
        """A contact phone that is the line itself gets no message (the SIM there may be in other hands)."""
        world.holder.subscriber.contact_phone = world.holder.msisdn
        db.flush()
        store_replacement(world)
        drain(db, settings)
        assert all(m.to != world.holder.msisdn for m in read_outbox(outbox))

    def test_rejection_tells_the_reason(
        self, world: World, db: Session, settings: Settings, outbox: Any
    ) -> None:
        """A rejected application's message gives the reviewer's reason."""
        ref = str(world.submit_online()["reference"])
        _post(
            world,
            f"/api/v1/replacements/{ref}/decision",
            world.reviewer,
            {"approve": False, "reason": "the selfie does not show your face clearly"},
        )
        assert templates(db)[-3:] == ["order_submitted", "order_in_review", "order_rejected"]
        drain(db, settings)
        rejected = [m for m in read_outbox(outbox) if m.template == "order_rejected"]
        assert "the selfie does not show your face clearly" in rejected[0].body

    def test_cancellation_tells_of_the_refund(
        self, world: World, db: Session, settings: Settings, outbox: Any
    ) -> None:
        """A paid store order cancelled before activation says the fee will be refunded (in English here)."""
        world.holder.subscriber.language = Language.EN
        db.flush()
        ref = _post(
            world,
            "/api/v1/replacements",
            world.clerk,
            {
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
        )["reference"]
        _post(world, f"/api/v1/replacements/{ref}/payment", world.clerk, {"method": "cash"})
        _post(world, f"/api/v1/replacements/{ref}/cancellation", world.clerk, {"reason": "found the old SIM"})
        drain(db, settings)
        cancelled = [m for m in read_outbox(outbox) if m.template == "order_cancelled"]
        assert "10.00 CNY will be refunded" in cancelled[0].body


class TestLossNotifications:
    """Suspending and reinstating a line are announced."""

    def test_loss_report_is_announced(self, world: World, db: Session) -> None:
        """An anonymous loss report queues the holder's notice; a repeated report queues nothing more."""
        body = {
            "msisdn": world.holder.msisdn,
            "real_name": world.holder.subscriber.real_name,
            "reason": "lost",
        }
        for _ in range(2):
            r = world.client.post("/api/v1/loss-reports", json=body)
            assert r.status_code in (200, 201), r.text
        assert templates(db) == ["loss_reported"]
