"""Queued notifications for the transport tests, and the jobs that carry them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.models import Job, Language, Notification
from simkeep.notifications.service import notify
from tests import factories

PHONE = "+8613912345678"


def queue(
    db: Session,
    settings: Settings,
    *,
    channel: str,
    template: str = "loss_reported",
    language: Language = Language.ZH_CN,
    phone: str = PHONE,
) -> Notification:
    """A holder with one contact on ``channel``, and ``template`` queued for it (not yet sent)."""
    holder = factories.holder(db, settings)
    subscriber = holder.subscriber
    subscriber.language = language
    if channel == "sms":
        subscriber.contact_email, subscriber.contact_phone = None, phone
    db.flush()
    (row,) = notify(db, settings, subscriber=subscriber, line=holder.line, template=template)
    return row


def job_of(db: Session, row: Notification) -> Job:
    """The delivery job of a notification, as stored now."""
    db.expire_all()
    return db.scalars(select(Job).where(Job.key == f"notification:{row.id}")).one()


def make_due(db: Session) -> None:
    """Bring every queued job's retry time to now, as if its backoff had passed."""
    db.execute(update(Job).values(run_at=utcnow() - timedelta(seconds=1)))
    db.flush()


def reload(db: Session, row: Notification) -> Notification:
    """``row`` as stored now."""
    db.expire_all()
    found = db.get(Notification, row.id)
    assert found is not None
    return found
