"""Jobs of the eSIM channel: order a profile, cancel one, activate an order once its profile is installed."""

from __future__ import annotations

from typing import Any

from simkeep.esim import progress, service
from simkeep.jobs.registry import JobContext, job


@job(service.ORDER_JOB, max_attempts=3, backoff_s=5.0)
def order_profile(ctx: JobContext, payload: dict[str, Any]) -> None:
    """downloadOrder + confirmOrder (released), then the activation and confirmation codes to the holder."""
    service.order_profile(
        ctx.session, ctx.settings, profile_id=int(payload["profile_id"]), attempt=int(payload.get("try", 0))
    )


@job(service.CANCEL_JOB, max_attempts=3, backoff_s=5.0)
def cancel_profile(ctx: JobContext, payload: dict[str, Any]) -> None:
    """cancelOrder (Unavailable) for the profile of a cancelled or expired order."""
    service.cancel_profile(
        ctx.session, ctx.settings, profile_id=int(payload["profile_id"]), attempt=int(payload.get("try", 0))
    )


@job(service.ACTIVATE_JOB, max_attempts=8, backoff_s=15.0)
def activate_installed(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Move the number to the eSIM once the SM-DP+ reported the profile installed."""
    progress.activate_installed(ctx.session, ctx.settings, order_id=int(payload["order_id"]))
