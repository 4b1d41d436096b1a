"""Background jobs of identity proofing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from simkeep.identity import evidence
from simkeep.jobs.registry import JobContext, scheduled
from simkeep.logging import get_logger

log = get_logger("simkeep.identity")


@scheduled("evidence.purge", every=timedelta(hours=6))
def purge_evidence(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Delete document photos and selfies past their retention; the verdicts stay."""
    report = evidence.purge(ctx.session, ctx.settings)
    log.info("evidence.purged", report=str(report))
