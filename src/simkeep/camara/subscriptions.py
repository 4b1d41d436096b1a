"""CAMARA SIM Swap Subscriptions 0.3: relying parties subscribe to a number's SIM swaps and get CloudEvents.

A subscription is a row; each event is a job (``camara.subscription.deliver``) written in the same
transaction as what caused it (the SIM change, the deletion, the expiry), with an idempotency key, and a
worker posts it to the sink with retries and doubling backoff (:mod:`simkeep.camara.tasks`). The sink
credential is sealed with the vault, bound to the subscription's id, and only opened to deliver.

A subscription ends (one ``subscription-ended`` event) when it is deleted, when its expiry time comes,
when it reaches its maximum number of events, when its sink token is about to run out, or when the sink
answers 410 Gone.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from simkeep.camara import repository
from simkeep.camara.common import PHONE_NUMBER
from simkeep.camara.errors import CamaraError
from simkeep.camara.sinks import check_sink
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.identity.vault import Sealed, get_vault
from simkeep.jobs.service import enqueue
from simkeep.models import CamaraSubscription, LineStatus, SubscriptionStatus

SWAPPED = "org.camaraproject.sim-swap-subscriptions.v0.swapped"
ENDED = "org.camaraproject.sim-swap-subscriptions.v0.subscription-ended"
PROTOCOLS = ("HTTP", "MQTT3", "MQTT5", "AMQP", "NATS", "KAFKA")
DELIVER = "camara.subscription.deliver"
END_CHECK = "camara.subscription.end_check"
WIPE = "camara.subscription.wipe_credential"
API_CREATE = "sim-swap-subscriptions.create"
API_LIST = "sim-swap-subscriptions.list"
API_GET = "sim-swap-subscriptions.get"
API_DELETE = "sim-swap-subscriptions.delete"
CREATE_SCOPES = ("sim-swap-subscriptions:org.camaraproject.sim-swap-subscriptions.v0.swapped:create",)
READ_SCOPES = ("sim-swap-subscriptions:read",)
DELETE_SCOPES = ("sim-swap-subscriptions:delete",)
#: A subscription whose sink token runs out within this time is ended while the token still works.
TOKEN_MARGIN = timedelta(minutes=2)
#: Sealed credentials of ended subscriptions are wiped after this (longer than every retry of a delivery).
CREDENTIAL_KEEP = timedelta(days=1)
MAX_CREDENTIAL_CHARS = 4096

TERMINATION_DESCRIPTIONS = {
    "SUBSCRIPTION_DELETED": "Subscription deleted by the requester.",
    "SUBSCRIPTION_EXPIRED": "Subscription expire time reached.",
    "MAX_EVENTS_REACHED": "Maximum number of events reached.",
    "ACCESS_TOKEN_EXPIRED": "The sink credential's access token expires.",
    "NETWORK_TERMINATED": "The sink answered 410 Gone; no further events are sent.",
}


@dataclass(frozen=True)
class SubscriptionRequest:
    """A create request that passed the 400 checks."""

    sink: str
    credential_type: str | None
    credential: dict[str, str] | None
    access_token_expires_at: datetime | None
    expires_at: datetime | None
    max_events: int | None
    phone_number: str | None


def _rfc3339(value: object, field: str, *, code: str = "INVALID_ARGUMENT") -> datetime:
    if not isinstance(value, str) or "T" not in value.upper():
        raise CamaraError(code, f"{field} must be an RFC 3339 date-time with a time zone.")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError as exc:
        raise CamaraError(code, f"{field} must be an RFC 3339 date-time with a time zone.") from exc
    if parsed.tzinfo is None:
        raise CamaraError(code, f"{field} must have a time zone.")
    return parsed.astimezone(UTC)


def _string(obj: dict[str, Any], name: str, *, code: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_CREDENTIAL_CHARS:
        raise CamaraError(
            code, f"sinkCredential.{name} is required: a string of 1 to {MAX_CREDENTIAL_CHARS}."
        )
    return value


def _credential(raw: object, *, now: datetime) -> tuple[str | None, dict[str, str] | None, datetime | None]:
    if raw is None:
        return None, None, None
    if not isinstance(raw, dict):
        raise CamaraError("INVALID_ARGUMENT", "sinkCredential must be an object.")
    kind = raw.get("credentialType")
    if kind == "PLAIN":
        return (
            "PLAIN",
            {
                "identifier": _string(raw, "identifier", code="INVALID_CREDENTIAL"),
                "secret": _string(raw, "secret", code="INVALID_CREDENTIAL"),
            },
            None,
        )
    if kind == "ACCESSTOKEN":
        token = _string(raw, "accessToken", code="INVALID_CREDENTIAL")
        if raw.get("accessTokenType") != "bearer":
            raise CamaraError("INVALID_TOKEN", "Only bearer token is supported (accessTokenType: bearer).")
        expires = raw.get("accessTokenExpiresUtc")
        if expires is None:
            raise CamaraError("INVALID_CREDENTIAL", "sinkCredential.accessTokenExpiresUtc is required.")
        expires_at = _rfc3339(expires, "sinkCredential.accessTokenExpiresUtc", code="INVALID_CREDENTIAL")
        if expires_at <= now + TOKEN_MARGIN:
            raise CamaraError("INVALID_CREDENTIAL", "The sink access token has expired or expires too soon.")
        return "ACCESSTOKEN", {"accessToken": token}, expires_at
    if kind == "REFRESHTOKEN":
        raise CamaraError("INVALID_CREDENTIAL", "Only ACCESSTOKEN and PLAIN sink credentials are supported.")
    raise CamaraError("INVALID_CREDENTIAL", "sinkCredential.credentialType must be PLAIN or ACCESSTOKEN.")


def _protocol_settings(raw: object) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise CamaraError("INVALID_ARGUMENT", "protocolSettings must be an object.")
    unknown = set(raw) - {"method"}
    if unknown:
        raise CamaraError("INVALID_ARGUMENT", f"protocolSettings.{sorted(unknown)[0]} is not supported.")
    if raw.get("method", "POST") != "POST":
        raise CamaraError("INVALID_ARGUMENT", "protocolSettings.method must be POST.")


def parse_request(
    settings: Settings, data: dict[str, Any], *, now: datetime | None = None
) -> SubscriptionRequest:
    """The create request checked against the spec: 400 with the spec's codes for anything wrong."""
    now = now or utcnow()
    protocol = data.get("protocol")
    if protocol is None:
        raise CamaraError("INVALID_ARGUMENT", "protocol is required.")
    if protocol not in PROTOCOLS:
        raise CamaraError("INVALID_ARGUMENT", f"protocol must be one of {', '.join(PROTOCOLS)}.")
    if protocol != "HTTP":
        raise CamaraError("INVALID_PROTOCOL", "Only HTTP is supported.")
    if "sink" not in data:
        raise CamaraError("INVALID_ARGUMENT", "sink is required.")
    sink = check_sink(settings, data["sink"]).url
    types = data.get("types")
    if not isinstance(types, list) or len(types) != 1:
        raise CamaraError("INVALID_ARGUMENT", "types must be an array of exactly one event type.")
    if types[0] != SWAPPED:
        raise CamaraError("INVALID_ARGUMENT", f"types must be [{SWAPPED!r}].")
    _protocol_settings(data.get("protocolSettings"))
    expires_at, max_events, phone = _config(data.get("config"), now=now)
    kind, credential, token_expires = _credential(data.get("sinkCredential"), now=now)
    return SubscriptionRequest(sink, kind, credential, token_expires, expires_at, max_events, phone)


def _config(config: object, *, now: datetime) -> tuple[datetime | None, int | None, str | None]:
    """``config``: (expiry time, maximum events, phone number of subscriptionDetail)."""
    if not isinstance(config, dict):
        raise CamaraError("INVALID_ARGUMENT", "config is required and must be an object.")
    detail = config.get("subscriptionDetail")
    if not isinstance(detail, dict):
        raise CamaraError("INVALID_ARGUMENT", "config.subscriptionDetail is required and must be an object.")
    phone = detail.get("phoneNumber")
    if phone is not None and (not isinstance(phone, str) or not PHONE_NUMBER.fullmatch(phone)):
        raise CamaraError("INVALID_ARGUMENT", "phoneNumber must be in E.164 format with a leading '+'.")
    expires_at = None
    if config.get("subscriptionExpireTime") is not None:
        expires_at = _rfc3339(config["subscriptionExpireTime"], "config.subscriptionExpireTime")
        if expires_at <= now:
            raise CamaraError("OUT_OF_RANGE", "config.subscriptionExpireTime must be in the future.")
    max_events = config.get("subscriptionMaxEvents")
    if max_events is not None:
        if isinstance(max_events, bool) or not isinstance(max_events, int):
            raise CamaraError("INVALID_ARGUMENT", "config.subscriptionMaxEvents must be an integer.")
        if max_events < 1:
            raise CamaraError("OUT_OF_RANGE", "config.subscriptionMaxEvents must be at least 1.")
    initial = config.get("initialEvent")
    if initial is not None:
        if not isinstance(initial, bool):
            raise CamaraError("INVALID_ARGUMENT", "config.initialEvent must be a boolean.")
        if initial:
            raise CamaraError(
                "INVALID_ARGUMENT",
                "config.initialEvent is not supported: a SIM swap is an occurrence, not a state to report.",
            )
    return expires_at, max_events, phone


def _reference(public_id: str) -> str:
    return f"camara-subscription:{public_id}"


def create_subscription(
    session: Session,
    settings: Settings,
    *,
    client_pk: int,
    token_phone: str | None,
    request: SubscriptionRequest,
) -> CamaraSubscription:
    """Subscribe a client to a number's SIM swaps (the caller commits): 422 for the identifier rules,
    404 for a number simkeep does not serve, 409 for the same subscription twice, 429 past the limit."""
    if token_phone is not None and request.phone_number is not None:
        raise CamaraError("UNNECESSARY_IDENTIFIER")
    msisdn = token_phone or request.phone_number
    if msisdn is None:
        raise CamaraError("MISSING_IDENTIFIER")
    line = repository.line_by_msisdn(session, msisdn)
    if line is None or line.status == LineStatus.RECYCLED:
        raise CamaraError("IDENTIFIER_NOT_FOUND")
    if repository.active_duplicate(session, client_pk=client_pk, line_id=line.id, sink=request.sink):
        raise CamaraError("ALREADY_EXISTS", "An active subscription of this number to this sink exists.")
    if (
        repository.count_active_subscriptions(session, client_pk)
        >= settings.camara_max_subscriptions_per_client
    ):
        raise CamaraError("QUOTA_EXCEEDED", "This client holds the most active subscriptions allowed.")
    now = utcnow()
    sub = CamaraSubscription(
        public_id=str(uuid.uuid4()),
        client_id=client_pk,
        line_id=line.id,
        msisdn=msisdn,
        three_legged=token_phone is not None,
        event_type=SWAPPED,
        sink=request.sink,
        credential_type=request.credential_type,
        access_token_expires_at=request.access_token_expires_at,
        expires_at=request.expires_at,
        max_events=request.max_events,
        events_queued=0,
        status=SubscriptionStatus.ACTIVE,
        starts_at=now,
        created_at=now,
    )
    if request.credential is not None:
        sealed = get_vault(settings).seal(
            json.dumps(request.credential).encode(), reference=_reference(sub.public_id)
        )
        sub.credential_key_id, sub.credential_nonce = sealed.key_id, sealed.nonce
        sub.credential_ciphertext = sealed.ciphertext
    session.add(sub)
    session.flush()
    _schedule_end_check(session, sub)
    return sub


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_response(sub: CamaraSubscription, *, with_phone_number: bool) -> dict[str, Any]:
    """The spec's ``Subscription`` (no credential; the phone number only for two-legged callers)."""
    config: dict[str, Any] = {"subscriptionDetail": {"phoneNumber": sub.msisdn} if with_phone_number else {}}
    if sub.expires_at is not None:
        config["subscriptionExpireTime"] = _iso(sub.expires_at)
    if sub.max_events is not None:
        config["subscriptionMaxEvents"] = sub.max_events
    body: dict[str, Any] = {
        "protocol": "HTTP",
        "sink": sub.sink,
        "types": [sub.event_type],
        "config": config,
        "id": sub.public_id,
        "startsAt": _iso(sub.starts_at),
        "status": str(sub.status),
    }
    if sub.expires_at is not None:
        body["expiresAt"] = _iso(sub.expires_at)
    return body


def _owned(
    session: Session, *, client_pk: int, public_id: str, token_phone: str | None
) -> CamaraSubscription:
    sub = repository.subscription_by_public_id(session, public_id[:36], client_pk=client_pk, for_update=True)
    if sub is None or (token_phone is not None and sub.msisdn != token_phone):
        raise CamaraError("NOT_FOUND")
    return sub


def list_subscriptions(
    session: Session, *, client_pk: int, token_phone: str | None, now: datetime | None = None
) -> list[CamaraSubscription]:
    """A client's subscriptions that were not deleted (only the token's number's for a three-legged token)."""
    end_due(session, now=now or utcnow(), client_pk=client_pk)
    return list(repository.subscriptions_of(session, client_pk=client_pk, msisdn=token_phone))


def get_subscription(
    session: Session, *, client_pk: int, public_id: str, token_phone: str | None, now: datetime | None = None
) -> CamaraSubscription:
    """One of the client's subscriptions (NOT_FOUND for another client's or an unknown id)."""
    end_due(session, now=now or utcnow(), client_pk=client_pk)
    return _owned(session, client_pk=client_pk, public_id=public_id, token_phone=token_phone)


def delete_subscription(
    session: Session, *, client_pk: int, public_id: str, token_phone: str | None
) -> CamaraSubscription:
    """End a subscription as deleted (a ``subscription-ended`` event if it was active); NOT_FOUND when
    unknown or deleted already."""
    sub = _owned(session, client_pk=client_pk, public_id=public_id, token_phone=token_phone)
    if sub.status == SubscriptionStatus.DELETED:
        raise CamaraError("NOT_FOUND")
    if sub.status == SubscriptionStatus.ACTIVE:
        _end(session, sub, reason="SUBSCRIPTION_DELETED", now=utcnow())
    else:
        sub.status = SubscriptionStatus.DELETED
    session.flush()
    return sub


def _event(
    sub: CamaraSubscription, *, key: str, kind: str, time: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    if not sub.three_legged:
        data = {"phoneNumber": sub.msisdn, **data}
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"simkeep:{key}")),
        "type": kind,
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "time": _iso(time),
        "data": {**data, "subscriptionId": sub.public_id},
    }


def _queue(
    session: Session, sub: CamaraSubscription, *, key: str, event: dict[str, Any], run_at: datetime
) -> bool:
    return enqueue(
        session, kind=DELIVER, key=key, payload={"subscription": sub.id, "event": event}, run_at=run_at
    )


def _schedule_wipe(session: Session, sub: CamaraSubscription, now: datetime) -> None:
    if sub.credential_ciphertext is not None:
        enqueue(
            session,
            kind=WIPE,
            key=f"{WIPE}:{sub.public_id}",
            payload={"subscription": sub.id},
            run_at=now + CREDENTIAL_KEEP,
        )


def _end(session: Session, sub: CamaraSubscription, *, reason: str, now: datetime) -> None:
    """End an active subscription, queue its ``subscription-ended`` event and the credential's wipe."""
    sub.status = (
        SubscriptionStatus.DELETED if reason == "SUBSCRIPTION_DELETED" else SubscriptionStatus.EXPIRED
    )
    sub.termination_reason = reason
    sub.ended_at = now
    _schedule_wipe(session, sub, now)
    key = f"camara.ended:{sub.public_id}"
    data = {"terminationReason": reason, "terminationDescription": TERMINATION_DESCRIPTIONS[reason]}
    # A second later than the events queued with it, so a sink normally hears of the swap before the end.
    _queue(
        session,
        sub,
        key=key,
        event=_event(sub, key=key, kind=ENDED, time=now, data=data),
        run_at=now + timedelta(seconds=1),
    )


def _due_reason(sub: CamaraSubscription, now: datetime) -> str | None:
    """Why an active subscription must end now, if it must."""
    if sub.expires_at is not None and sub.expires_at <= now:
        return "SUBSCRIPTION_EXPIRED"
    if sub.access_token_expires_at is not None and sub.access_token_expires_at <= now + TOKEN_MARGIN:
        return "ACCESS_TOKEN_EXPIRED"
    return None


def _next_end(sub: CamaraSubscription) -> datetime | None:
    """When the subscription falls due to end by itself (expiry, or its sink token running out)."""
    times = [t for t in (sub.expires_at, sub.access_token_expires_at) if t is not None]
    if sub.access_token_expires_at is not None:
        times[-1] = sub.access_token_expires_at - TOKEN_MARGIN
    return min(times) if times else None


def _schedule_end_check(session: Session, sub: CamaraSubscription) -> None:
    at = _next_end(sub)
    if at is not None:
        enqueue(
            session, kind=END_CHECK, key=f"{END_CHECK}:{sub.public_id}:{_iso(at)}",
            payload={"subscription": sub.id}, run_at=at,
        )  # fmt: skip


def end_due(session: Session, *, now: datetime, client_pk: int | None = None) -> int:
    """End the active subscriptions whose expiry time came or whose sink token is about to run out
    (the queued end checks do it on time; this catches up before a client's list or get)."""
    ended = 0
    for sub in repository.subscriptions_due_to_end(
        session, now=now, token_horizon=now + TOKEN_MARGIN, client_pk=client_pk
    ):
        reason = _due_reason(sub, now)
        if reason is not None:
            _end(session, sub, reason=reason, now=now)
            ended += 1
    session.flush()
    return ended


def end_check(session: Session, *, subscription_pk: int, now: datetime | None = None) -> bool:
    """The queued check at a subscription's end time: end it if due (True), else check again later."""
    now = now or utcnow()
    sub = repository.subscription_for_update(session, subscription_pk)
    if sub is None or sub.status != SubscriptionStatus.ACTIVE:
        return False
    reason = _due_reason(sub, now)
    if reason is None:
        _schedule_end_check(session, sub)  # run early (clock skew between hosts): once more at its time
        return False
    _end(session, sub, reason=reason, now=now)
    session.flush()
    return True


def wipe_credential(session: Session, *, subscription_pk: int) -> None:
    """Forget an ended subscription's sealed sink credential (a day after the end, by then every delivery
    has been tried)."""
    sub = repository.subscription_for_update(session, subscription_pk)
    if sub is not None and sub.status != SubscriptionStatus.ACTIVE:
        sub.credential_ciphertext = sub.credential_nonce = None
        session.flush()


def on_sim_change(session: Session, *, line_id: int, msisdn: str, changed_at: datetime) -> None:
    """Queue a ``swapped`` event for each active subscription to this line's number, in the caller's
    transaction (so events exist exactly when the SIM change is committed). Calling it twice for the same
    change queues each event once. A subscription past its expiry ends instead; one that reaches its
    maximum number of events ends after this event."""
    now = utcnow()
    for sub in repository.active_subscriptions_of_line(session, line_id):
        if sub.msisdn != msisdn or changed_at < sub.starts_at:
            continue
        reason = _due_reason(sub, now)
        if reason is not None:
            _end(session, sub, reason=reason, now=now)
            continue
        key = f"camara.swapped:{sub.public_id}:{_iso(changed_at)}"
        event = _event(sub, key=key, kind=SWAPPED, time=changed_at, data={})
        if _queue(session, sub, key=key, event=event, run_at=now):
            sub.events_queued += 1
        if sub.max_events is not None and sub.events_queued >= sub.max_events:
            _end(session, sub, reason="MAX_EVENTS_REACHED", now=now)
    session.flush()


def authorization_for(settings: Settings, sub: CamaraSubscription) -> str | None:
    """The Authorization header for the sink, from the sealed credential (None without one)."""
    if sub.credential_ciphertext is None or sub.credential_nonce is None or sub.credential_key_id is None:
        return None
    plain = get_vault(settings).open(
        Sealed(sub.credential_key_id, sub.credential_nonce, sub.credential_ciphertext),
        reference=_reference(sub.public_id),
    )
    credential: dict[str, str] = json.loads(plain)
    if sub.credential_type == "ACCESSTOKEN":
        return f"Bearer {credential['accessToken']}"
    pair = f"{credential['identifier']}:{credential['secret']}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def deliverable(sub: CamaraSubscription, event: dict[str, Any]) -> bool:
    """Whether an event still goes out: an end always; a swap only if it happened before the end."""
    if event["type"] == ENDED or sub.ended_at is None:
        return True
    return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")) <= sub.ended_at


def sink_gone(session: Session, sub: CamaraSubscription) -> None:
    """The sink answered 410 Gone: end the subscription without a further event (nobody listens)."""
    if sub.status == SubscriptionStatus.ACTIVE:
        sub.status = SubscriptionStatus.EXPIRED
        sub.termination_reason = "NETWORK_TERMINATED"
        sub.ended_at = utcnow()
        _schedule_wipe(session, sub, sub.ended_at)
        session.flush()
