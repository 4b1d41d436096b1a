"""The demo carrier's journeys: parcels move on over time, through the same path as a carrier's webhook."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from simkeep.db.base import utcnow
from simkeep.jobs.registry import JobContext, scheduled
from simkeep.models import Parcel, ParcelState
from simkeep.shipping import service
from simkeep.shipping.carriers import DemoCarrier

P = ParcelState
NEXT = {P.LABEL_CREATED: P.IN_TRANSIT, P.IN_TRANSIT: P.OUT_FOR_DELIVERY, P.OUT_FOR_DELIVERY: P.DELIVERED}
WHERE = {
    P.IN_TRANSIT: "sorting centre",
    P.OUT_FOR_DELIVERY: "local delivery station",
    P.DELIVERED: "recipient",
}


@scheduled("shipping.demo_advance", every=timedelta(minutes=1))
def advance_demo_parcels(ctx: JobContext, _payload: dict[str, Any]) -> None:
    """Move every demo parcel whose last step is older than the configured step time one step on."""
    step = timedelta(minutes=ctx.settings.demo_carrier_step_minutes)
    now = utcnow()
    parcels = ctx.session.scalars(
        select(Parcel)
        .where(
            Parcel.carrier == DemoCarrier.name,
            Parcel.state.in_(list(NEXT)),
            Parcel.last_event_at <= now - step,
        )
        .order_by(Parcel.id)
        .limit(500)
    ).all()
    for parcel in parcels:
        state = NEXT[parcel.state]
        service.apply_event(
            ctx.session,
            carrier=DemoCarrier.name,
            event=service.TrackingEvent(
                event_id=f"demo-{parcel.id}-{state}",
                tracking_number=parcel.tracking_number,
                state=state,
                occurred_at=now,
                location=WHERE[state],
            ),
        )
