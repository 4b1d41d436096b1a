"""Background jobs of the replacement workflow."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from simkeep.jobs.registry import JobContext, scheduled
from simkeep.logging import get_logger
from simkeep.replacements import service

log = get_logger("simkeep.replacements")


@scheduled("orders.expire", every=timedelta(hours=1))
def expire_orders(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Close the orders not activated within the deadline and release their SIMs (1,000 per run)."""
    expired = service.expire_overdue(ctx.session)
    if expired:
        log.info("orders.expired", count=len(expired))
