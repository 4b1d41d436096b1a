"""The job that sends a queued notification."""

from __future__ import annotations

from typing import Any

from simkeep.db.base import utcnow
from simkeep.jobs.registry import JobContext, job
from simkeep.models import Notification
from simkeep.notifications.templates import render
from simkeep.notifications.transports import OutgoingMessage, get_transport

DELIVER = "notification.deliver"


@job(DELIVER, max_attempts=8, backoff_s=15.0)
def deliver_notification(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Render the notification in the holder's language and hand it to the transport, once."""
    row = ctx.session.get(Notification, int(payload["notification_id"]), with_for_update=True)
    if row is None or row.status in ("sent", "delivered"):
        return
    if row.destination is None:
        row.status, row.error = "failed", "no destination"
        return
    subject, body = render(row.template, row.language, **(row.params or {}))
    message = OutgoingMessage(
        channel=row.channel,
        to=row.destination,
        subject=subject,
        body=body,
        template=row.template,
        key=ctx.key,
    )
    provider_id = get_transport(ctx.settings).send(message)  # raises: the job is retried, then dead
    row.status, row.sent_at, row.error = "sent", utcnow(), None
    if isinstance(provider_id, str):
        row.provider_message_id = provider_id[:80]
