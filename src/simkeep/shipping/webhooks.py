"""Signed tracking webhooks: ``X-Simkeep-Timestamp`` and ``X-Simkeep-Signature``.

The carrier signs ``"<timestamp>." + body`` with HMAC-SHA256 under the secret it shares with simkeep and
sends ``sha256=<hex>``. A call without both headers, with a wrong signature, or with a timestamp more than
five minutes away from simkeep's clock is refused; an event id seen before is refused as a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime
from typing import Any

from simkeep.config import Settings
from simkeep.errors import AuthenticationFailed, InvalidInput
from simkeep.models import ParcelState
from simkeep.shipping.service import TrackingEvent

TOLERANCE_S = 300
MAX_BODY_BYTES = 64 * 1024


class WebhookRejected(AuthenticationFailed):
    """A webhook call that is not proven to come from the carrier."""

    code = "WEBHOOK_SIGNATURE_INVALID"


def secret_for(settings: Settings, carrier: str) -> bytes:
    """A carrier's shared secret (outside production, derived from the secret key when none is set)."""
    configured = settings.shipping_webhook_secrets.get(carrier)
    if configured:
        return configured.encode()
    if settings.environment != "production":
        return hmac.new(settings.secret_key.encode(), f"webhook:{carrier}".encode(), hashlib.sha256).digest()
    raise WebhookRejected(f"No webhook secret is configured for carrier {carrier!r}.")


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for a body sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(
    settings: Settings,
    *,
    carrier: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float | None = None,
) -> None:
    """Refuse a call whose signature or timestamp does not check out."""
    if not timestamp or not signature:
        raise WebhookRejected("The call is not signed.", code="WEBHOOK_UNSIGNED")
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookRejected(
            "The timestamp is not a number of seconds.", code="WEBHOOK_TIMESTAMP_STALE"
        ) from None
    if abs((now if now is not None else time.time()) - sent) > TOLERANCE_S:
        raise WebhookRejected("The timestamp is too far from now.", code="WEBHOOK_TIMESTAMP_STALE")
    expected = sign(secret_for(settings, carrier), timestamp, body)
    if not hmac.compare_digest(expected, signature.strip()):
        raise WebhookRejected("The signature does not match.")


def parse_event(body: bytes) -> TrackingEvent:
    """The tracking event in a verified body."""
    try:
        data: Any = json.loads(body)
        if not isinstance(data, dict):
            raise TypeError
        event_id = str(data["event_id"]).strip()
        tracking = str(data["tracking_number"]).strip()
        state = ParcelState(str(data["status"]))
        occurred = datetime.fromisoformat(str(data["occurred_at"]))
    except (ValueError, TypeError, KeyError):
        raise InvalidInput(
            "The event needs event_id, tracking_number, status (label_created, in_transit, out_for_delivery, "
            "delivered or returned) and occurred_at (ISO 8601 with a time zone).",
            code="WEBHOOK_EVENT_INVALID",
        ) from None
    if occurred.tzinfo is None or not event_id or len(event_id) > 80 or not tracking or len(tracking) > 64:
        raise InvalidInput(
            "event_id (1-80 characters), tracking_number (1-64) and a time zone on occurred_at are required.",
            code="WEBHOOK_EVENT_INVALID",
        )
    location = data.get("location")
    return TrackingEvent(
        event_id=event_id,
        tracking_number=tracking,
        state=state,
        occurred_at=occurred,
        location=str(location)[:120] if location else None,
        raw={
            k: data[k]
            for k in ("event_id", "tracking_number", "status", "occurred_at", "location")
            if k in data
        },
    )
