"""Tracking webhooks from carriers, and an order's parcel journey."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel

from simkeep.auth.deps import AppSettings, DbSession, SignedInActor
from simkeep.errors import InvalidInput
from simkeep.logging import get_logger
from simkeep.models import ParcelState
from simkeep.routing import OneTripRoute
from simkeep.shipping import service, webhooks

router = APIRouter(route_class=OneTripRoute, tags=["shipping"])
log = get_logger("simkeep.shipping")


async def _raw_body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > webhooks.MAX_BODY_BYTES:
        raise InvalidInput("The event is too large.", code="WEBHOOK_EVENT_INVALID")
    return body


class EventOutcome(BaseModel):
    """Whether the event was applied, and why not."""

    applied: bool
    ignored_because: str | None = None


class ParcelEventRead(BaseModel):
    """One step of a parcel's journey."""

    state: ParcelState
    occurred_at: datetime
    location: str | None


class ParcelRead(BaseModel):
    """A parcel and its journey."""

    carrier: str
    tracking_number: str
    state: ParcelState
    region: str
    expected_on: date
    events: list[ParcelEventRead]


@router.post("/shipping/{carrier}/events", response_model=EventOutcome)
def tracking_event(
    carrier: str,
    *,
    session: DbSession,
    settings: AppSettings,
    body: Annotated[bytes, Depends(_raw_body)],
    x_simkeep_timestamp: Annotated[str | None, Header()] = None,
    x_simkeep_signature: Annotated[str | None, Header()] = None,
) -> EventOutcome:
    """A carrier reports a parcel event (signed; see docs/integrations.md). Out-of-order events are kept
    and ignored; replays, unsigned or stale calls and unknown parcels are refused."""
    try:
        webhooks.verify(
            settings, carrier=carrier, timestamp=x_simkeep_timestamp, signature=x_simkeep_signature, body=body
        )
        event = webhooks.parse_event(body)
        ignored = service.apply_event(session, carrier=carrier, event=event)
    except Exception as exc:
        log.warning("webhook.refused", carrier=carrier[:32], error=getattr(exc, "code", type(exc).__name__))
        raise
    session.commit()
    return EventOutcome(applied=ignored is None, ignored_because=ignored)


@router.get("/replacements/{reference}/parcels", response_model=list[ParcelRead])
def parcels(reference: str, session: DbSession, actor: SignedInActor) -> list[ParcelRead]:
    """The order's parcels with their journeys (the holder's own order, or staff)."""
    from simkeep.replacements.service import get_order

    order = get_order(session, actor=actor, reference=reference)
    return [
        ParcelRead(
            carrier=p.carrier,
            tracking_number=p.tracking_number,
            state=p.state,
            region=p.region,
            expected_on=p.expected_on,
            events=[
                ParcelEventRead(state=e.state, occurred_at=e.occurred_at, location=e.location) for e in events
            ],
        )
        for p, events in service.journey(session, order)
    ]
