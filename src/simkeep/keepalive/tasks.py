"""Keep-alive jobs: the daily sweep (one batch per job, committed with it) and its follow-ups."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from simkeep.jobs.registry import JobContext, job, scheduled
from simkeep.jobs.service import enqueue
from simkeep.keepalive import service
from simkeep.keepalive.batch import RECYCLE, REMIND

SWEEP = "keepalive.sweep"
SWEEP_MORE = "keepalive.sweep.more"
BATCH = 20_000


def _step(ctx: JobContext, now: datetime, step: int) -> None:
    counts = service.sweep_batch(ctx.session, now=now, limit=BATCH)
    if counts.checked + counts.computed:  # more may be due: the next batch is a job of its own
        enqueue(
            ctx.session,
            kind=SWEEP_MORE,
            key=f"{SWEEP_MORE}:{now.isoformat()}:{step + 1}",
            payload={"now": now.isoformat(), "step": step + 1},
        )


@scheduled(SWEEP, every=timedelta(days=1))
def daily_sweep(ctx: JobContext, payload: dict[str, Any]) -> None:  # noqa: ARG001 - no payload
    """Start the daily sweep: pool aging and the first batch; each further batch is its own job."""
    now = datetime.now().astimezone()
    service.release_aged_numbers(ctx.session, now=now)
    _step(ctx, now, 0)


@job(SWEEP_MORE, max_attempts=5)
def sweep_more(ctx: JobContext, payload: dict[str, Any]) -> None:
    """One further batch of a sweep."""
    _step(ctx, datetime.fromisoformat(payload["now"]), int(payload["step"]))


@job(REMIND)
def remind(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Send one keep-alive reminder."""
    days = payload.get("days")  # jobs written before the set-based sweep carry the days left
    service.send_reminder(
        ctx.session,
        ctx.settings,
        reminder_id=int(payload["reminder_id"]),
        days=None if days is None else int(days),
    )


@job(RECYCLE)
def recycle(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Retire the recycled line's SIM in the network, tell the holder, audit."""
    service.finish_recycling(ctx.session, ctx.settings, recycling_id=int(payload["recycling_id"]))
