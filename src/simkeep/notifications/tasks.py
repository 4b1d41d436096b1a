"""The job that sends a queued notification.

The worker hands the ``notification.deliver`` jobs of a batch to :func:`deliver_notifications` together: one
query reads (and on PostgreSQL locks) their notifications, each message goes to the transport on its own,
and the ones sent are recorded in one statement. A message the transport refuses fails its own job only,
and its notification is left as it was (queued), to be tried again after the job's backoff.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from simkeep.db.base import utcnow
from simkeep.jobs.registry import BatchItem, JobContext, job
from simkeep.models import Notification
from simkeep.notifications.templates import render
from simkeep.notifications.transports import OutgoingMessage, get_transport

DELIVER = "notification.deliver"
#: Statuses after which a notification is not sent again.
FINISHED = ("sent", "delivered")


def deliver_notifications(items: list[BatchItem]) -> dict[int, Exception]:
    """Render each notification in the holder's language and hand it to the transport, once.

    Returns the transport's (or the template's) error for each job whose message was not sent; nothing is
    written for those.
    """
    if not items:
        return {}
    session, settings = items[0].context.session, items[0].context.settings
    wanted = {int(item.payload["notification_id"]) for item in items}
    stmt = (
        select(
            Notification.id,
            Notification.status,
            Notification.channel,
            Notification.destination,
            Notification.template,
            Notification.language,
            Notification.params,
        )
        .where(Notification.id.in_(wanted))
        .order_by(Notification.id)  # one locking order for every worker
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    rows = {row.id: row for row in session.execute(stmt)}
    transport = get_transport(settings)
    errors: dict[int, Exception] = {}
    sent: list[int] = []
    with_provider_id: list[dict[str, Any]] = []
    no_destination: list[int] = []
    for item in items:
        row = rows.get(int(item.payload["notification_id"]))
        if row is None or row.status in FINISHED or row.id in sent:
            continue
        if row.destination is None:
            no_destination.append(row.id)
            continue
        try:
            subject, body = render(row.template, row.language, **(row.params or {}))
            provider_id = transport.send(
                OutgoingMessage(
                    channel=row.channel,
                    to=row.destination,
                    subject=subject,
                    body=body,
                    template=row.template,
                    key=item.context.key,
                )
            )
        except Exception as exc:  # the job is retried, then dead; its notification stays as it was
            errors[item.context.job_id] = exc
            continue
        if isinstance(provider_id, str):
            with_provider_id.append({"id": row.id, "provider_message_id": provider_id[:80]})
        sent.append(row.id)
    # The updates keep the session's copies of these notifications (if it holds any) up to date.
    if sent:
        session.execute(
            update(Notification)
            .where(Notification.id.in_(sent))
            .values(status="sent", sent_at=utcnow(), error=None)
        )
    if with_provider_id:
        session.execute(update(Notification), with_provider_id)  # by primary key, in one executemany
        for values in with_provider_id:
            held = session.identity_map.get(Session.identity_key(Notification, values["id"]))
            if held is not None:
                session.expire(held, ["provider_message_id"])
    if no_destination:
        session.execute(
            update(Notification)
            .where(Notification.id.in_(no_destination))
            .values(status="failed", error="no destination")
        )
    return errors


@job(DELIVER, max_attempts=8, backoff_s=15.0, batch=deliver_notifications)
def deliver_notification(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Send one queued notification (see :func:`deliver_notifications`); raises when it was not sent."""
    errors = deliver_notifications([BatchItem(ctx, payload)])
    if ctx.job_id in errors:
        raise errors[ctx.job_id]
