"""Jobs of CAMARA subscriptions: deliver one event to its sink, end a subscription at its time, and wipe
an ended subscription's sink credential. Each is queued with the change that calls for it (no polling)."""

from __future__ import annotations

from typing import Any

import structlog

from simkeep.camara import sinks, subscriptions
from simkeep.jobs.registry import JobContext, job
from simkeep.models import CamaraSubscription

log = structlog.get_logger("simkeep.camara")


@job(subscriptions.DELIVER, max_attempts=8, backoff_s=10.0)
def deliver(ctx: JobContext, payload: dict[str, Any]) -> None:
    """POST one CloudEvent to the subscription's sink; a failure raises, so the queue retries it later."""
    sub = ctx.session.get(CamaraSubscription, int(payload["subscription"]))
    event: dict[str, Any] = dict(payload["event"])
    if sub is None or not subscriptions.deliverable(sub, event):
        log.info("camara.event_skipped", job=ctx.job_id, type=event.get("type"))
        return
    event = {"id": event["id"], "source": ctx.settings.camara_event_source, **event}
    try:
        status = sinks.post_event(
            ctx.settings, sub.sink, event, authorization=subscriptions.authorization_for(ctx.settings, sub)
        )
    except sinks.SinkGone:
        subscriptions.sink_gone(ctx.session, sub)
        log.warning("camara.sink_gone", subscription=sub.public_id, job=ctx.job_id)
        return
    log.info("camara.event_delivered", subscription=sub.public_id, type=event["type"], status=status)


@job(subscriptions.END_CHECK, max_attempts=8, backoff_s=30.0)
def end_check(ctx: JobContext, payload: dict[str, Any]) -> None:
    """At a subscription's expiry (or shortly before its sink token runs out): end it and queue the
    subscription-ended event."""
    subscriptions.end_check(ctx.session, subscription_pk=int(payload["subscription"]))


@job(subscriptions.WIPE, max_attempts=8, backoff_s=60.0)
def wipe_credential(ctx: JobContext, payload: dict[str, Any]) -> None:
    """A day after a subscription ended: forget its sealed sink credential."""
    subscriptions.wipe_credential(ctx.session, subscription_pk=int(payload["subscription"]))
