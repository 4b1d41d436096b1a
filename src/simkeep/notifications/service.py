"""Telling holders what happened, on every registered channel other than the line itself.

One-time codes are sent at once (:func:`deliver`: the holder is waiting, and a code must never be stored in
clear, not even in a queue); everything else is queued (:func:`notify`) and sent by the worker.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.jobs.service import enqueue
from simkeep.logging import get_logger
from simkeep.masking import mask_email, mask_msisdn
from simkeep.models import Line, Notification, Subscriber
from simkeep.notifications.tasks import DELIVER
from simkeep.notifications.templates import render
from simkeep.notifications.transports import OutgoingMessage, get_transport

log = get_logger("simkeep.notifications")


def contacts(subscriber: Subscriber, line: Line | None) -> dict[str, str]:
    """The holder's registered contacts, never the number the message is about."""
    found: dict[str, str] = {}
    if subscriber.contact_email:
        found["email"] = subscriber.contact_email
    if subscriber.contact_phone and (line is None or subscriber.contact_phone != line.msisdn):
        found["sms"] = subscriber.contact_phone
    return found


def mask_destination(channel: str, address: str) -> str:
    """What a person may be shown of an address."""
    return mask_email(address) if channel == "email" else mask_msisdn(address)


def deliver(
    session: Session,
    settings: Settings,
    *,
    subscriber: Subscriber,
    line: Line | None,
    channel: str,
    address: str,
    template: str,
    params: dict[str, object],
) -> Notification:
    """Send one message now and record it with its delivery state."""
    subject, body = render(template, str(subscriber.language), **params)
    row = Notification(
        subscriber_id=subscriber.id,
        line_id=line.id if line else None,
        channel=channel,
        destination_masked=mask_destination(channel, address),
        template=template,
        language=str(subscriber.language),
        status="pending",
    )
    session.add(row)
    try:
        provider_id = get_transport(settings).send(
            OutgoingMessage(channel=channel, to=address, subject=subject, body=body, template=template)
        )
    except Exception as exc:
        row.status, row.error = "failed", type(exc).__name__
        log.warning("notification.failed", template=template, channel=channel, error=type(exc).__name__)
    else:
        row.status, row.sent_at = "sent", utcnow()
        if isinstance(provider_id, str):
            row.provider_message_id = provider_id[:80]  # SMS delivery receipts are matched on it
    session.flush()
    return row


def notify(
    session: Session,
    settings: Settings | None,  # noqa: ARG001 - delivery (the worker) reads the settings, not this call
    *,
    subscriber: Subscriber,
    line: Line | None,
    template: str,
    **params: object,
) -> list[Notification]:
    """Queue ``template`` for every registered contact of the holder (none of them the line itself).

    The notifications and their delivery jobs are written in the caller's transaction: they go out if and
    only if the change they announce is committed, and survive a crash of the process that made them.
    """
    if line is not None:
        params.setdefault("msisdn", mask_msisdn(line.msisdn))
    render(template, str(subscriber.language), **params)  # a template or parameter mistake fails here, now
    rows = []
    for channel, address in contacts(subscriber, line).items():
        row = Notification(
            subscriber_id=subscriber.id,
            line_id=line.id if line else None,
            channel=channel,
            destination=address,
            destination_masked=mask_destination(channel, address),
            template=template,
            language=str(subscriber.language),
            params={k: v if isinstance(v, (int, float)) else str(v) for k, v in params.items()},
            status="queued",
        )
        session.add(row)
        session.flush()
        enqueue(session, kind=DELIVER, key=f"notification:{row.id}", payload={"notification_id": row.id})
        rows.append(row)
    return rows
