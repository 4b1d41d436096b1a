"""eSIM profiles of replacement orders: order, release to the holder, cancel, retry, and the activation guard.

The life of a profile (docs/esim.md)::

    requested -> (downloadOrder) allocated -> (confirmOrder, releaseFlag) released
    released -> (device, reported by the SM-DP+) downloaded -> installed -> the order is activated
    any step refused -> error (subject/reason/message kept; staff retry or cancel)
    order cancelled or expired -> (cancelOrder, Unavailable) cancelled

Every call to the SM-DP+ runs in a job (:mod:`simkeep.esim.tasks`) queued in the transaction that made it
necessary. A refusal ends in state ``error``; a timeout is retried with backoff, and a retry restarts the
order at the SM-DP+ from the beginning (cancel to Available, order, confirm), so a reply lost in transit
never leaves a profile half-ordered. The caller (request, command or job) commits.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

import simkeep.esim.templates as _templates  # noqa: F401 - registers the message templates
from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.esim import protocol
from simkeep.esim.client import Es2PlusClient
from simkeep.esim.errors import EsimNotConfigured, EsimProfileNotFound, EsimProfileNotReady, SmdpError
from simkeep.esim.templates import CONFIRMATION_VIA
from simkeep.jobs.service import enqueue
from simkeep.logging import get_logger
from simkeep.masking import mask_email, mask_msisdn
from simkeep.models import (
    EsimProfile,
    EsimProfileState,
    Line,
    LineStatus,
    Notification,
    ReplacementOrder,
    Sim,
    SimStatus,
    Subscriber,
)
from simkeep.security import keyed_hash

log = get_logger("simkeep.esim")

P = EsimProfileState
ORDER_JOB = "esim.order"
CANCEL_JOB = "esim.cancel"
ACTIVATE_JOB = "esim.activate"
#: Tries of one SM-DP+ step after timeouts before the profile is left in error for staff.
MAX_TRIES = 6
RETRY_BASE_S = 15.0
CONFIRMATION_CODE_DIGITS = 8
#: The actor that activates an order when the SM-DP+ reports its profile installed.
ESIM_ACTOR = Actor(kind="system", label="system:esim")
#: States from which the holder's phone may still download (the activation code is shown).
DOWNLOADABLE = frozenset({P.RELEASED, P.DOWNLOADED, P.INSTALLED, P.ENABLED})
#: Where activation may follow: installed (or enabled) on the device.
INSTALLED = frozenset({P.INSTALLED, P.ENABLED})
#: The order of the states a profile moves through (callbacks never move it backwards).
RANK = {
    P.REQUESTED: 0,
    P.ALLOCATED: 1,
    P.CONFIRMED: 2,
    P.RELEASED: 3,
    P.DOWNLOADED: 4,
    P.INSTALLED: 5,
    P.ENABLED: 6,
    P.DELETED: 7,
}


def profile_of(session: Session, order: ReplacementOrder, *, for_update: bool = False) -> EsimProfile | None:
    """The eSIM profile of an order, if it has one."""
    stmt = select(EsimProfile).where(EsimProfile.order_id == order.id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def request_profile(session: Session, *, order: ReplacementOrder, sim: Sim) -> EsimProfile:
    """An eSIM order got its SIM: record its profile and queue the order to the SM-DP+ (same transaction)."""
    profile = EsimProfile(order_id=order.id, sim_id=sim.id, iccid=sim.iccid, state=P.REQUESTED)
    session.add(profile)
    session.flush()
    enqueue(
        session,
        kind=ORDER_JOB,
        key=f"esim.order:{profile.id}:0",
        payload={"profile_id": profile.id, "try": 0},
    )
    record(
        session,
        actor=ESIM_ACTOR.label,
        action="esim.profile_requested",
        subject_type="replacement_order",
        subject_id=order.reference,
        data={"iccid_last4": sim.iccid[-4:]},
    )
    return profile


def new_confirmation_code() -> str:
    """A random numeric confirmation code (SGP.22: the holder types it into the phone while installing)."""
    return f"{secrets.randbelow(10**CONFIRMATION_CODE_DIGITS):0{CONFIRMATION_CODE_DIGITS}d}"


def confirmation_code_hash(settings: Settings, profile: EsimProfile, code: str) -> str:
    """The HMAC under which a profile's confirmation code is kept (never the code itself)."""
    return keyed_hash(
        settings.secret_key, f"{profile.id}:{profile.iccid}:{code}", purpose="esim-confirmation-code"
    )


def activation_code(profile: EsimProfile) -> str | None:
    """The profile's activation code, once it is released (``$1``: a confirmation code is required)."""
    if profile.smdp_address is None or profile.matching_id is None or profile.state not in DOWNLOADABLE:
        return None
    return protocol.activation_code(
        profile.smdp_address,
        profile.matching_id,
        confirmation_code_required=profile.confirmation_code_hash is not None,
    )


def _client(settings: Settings) -> Es2PlusClient:
    if not settings.esim_smdp_url.strip():
        raise EsimNotConfigured(
            "The eSIM channel is not configured: set SIMKEEP_ESIM_SMDP_URL to the SM-DP+'s ES2+ address, "
            "then retry with `simkeep esim retry REFERENCE`."
        )
    return Es2PlusClient.from_settings(settings)


def _error(
    session: Session, profile: EsimProfile, exc: Exception, *, step: str, keep_state: bool = False
) -> None:
    """Keep why a step failed on the profile, where staff see it; ``error`` unless ``keep_state``."""
    if isinstance(exc, SmdpError):
        subject, reason = exc.subject_code or exc.code, exc.reason_code or exc.status
    else:
        subject, reason = "simkeep", getattr(exc, "code", type(exc).__name__)
    profile.error_subject, profile.error_reason = subject[:100], reason[:100]
    profile.error_message = f"{step}: {exc}"[:500]
    if not keep_state:
        profile.state = P.ERROR
    session.flush()
    order = session.get(ReplacementOrder, profile.order_id)
    record(
        session,
        actor=ESIM_ACTOR.label,
        action="esim.step_failed" if not keep_state else "esim.step_retrying",
        subject_type="replacement_order",
        subject_id=order.reference if order else profile.order_id,
        reason=profile.error_message,
        data={"step": step, "subject": subject, "reason": reason},
    )
    log.warning("esim.step_failed", step=step, subject=subject, reason=reason, retrying=keep_state)


def _clear_error(profile: EsimProfile) -> None:
    profile.error_subject = profile.error_reason = profile.error_message = None


def _retry_later(session: Session, *, kind: str, profile: EsimProfile, attempt: int) -> bool:
    """Queue the next try of a step after a timeout; False when the tries are used up."""
    if attempt + 1 >= MAX_TRIES:
        return False
    run_at = utcnow() + timedelta(seconds=RETRY_BASE_S * 2**attempt)
    name = kind.split(".", 1)[1]
    enqueue(
        session,
        kind=kind,
        key=f"esim.{name}:{profile.id}:{attempt + 1}:{secrets.token_hex(4)}",
        payload={"profile_id": profile.id, "try": attempt + 1},
        run_at=run_at,
    )
    return True


@dataclass(frozen=True)
class ConfirmationRoute:
    """Where the confirmation code goes, and whether the activation code may also go by e-mail."""

    channel: str  # "sms" | "email"
    address: str
    via: str  # key of CONFIRMATION_VIA
    activation_by_email: str | None


def confirmation_route(subscriber: Subscriber, line: Line, *, loss_open: bool) -> ConfirmationRoute | None:
    """Send the confirmation code by a channel other than the activation code's (docs/esim.md).

    The activation code is on the portal (and by e-mail); the confirmation code goes by SMS to the registered
    contact number; without one, by e-mail (and then the activation code is not e-mailed too); only when there
    is nothing else, by SMS to the line's own number, and never while a loss report is open: that SMS would
    reach whoever holds the lost SIM (or nobody, as it is barred). None: no safe channel exists.
    """
    phone = subscriber.contact_phone if subscriber.contact_phone != line.msisdn else None
    if phone:
        return ConfirmationRoute("sms", phone, "sms", subscriber.contact_email)
    if subscriber.contact_email:
        return ConfirmationRoute("email", subscriber.contact_email, "email", None)
    if not loss_open and line.status == LineStatus.ACTIVE:
        return ConfirmationRoute("sms", line.msisdn, "line_sms", None)
    return None


def _loss_open(session: Session, line: Line) -> bool:
    from simkeep.models import LossReport

    open_report = session.scalar(select(LossReport.id).where(LossReport.open_line_id == line.id).limit(1))
    return open_report is not None or line.status == LineStatus.SUSPENDED


def order_profile(
    session: Session, settings: Settings, *, profile_id: int, attempt: int = 0
) -> EsimProfile | None:
    """Order the profile at the SM-DP+, confirm and release it, and tell the holder (the ``esim.order`` job).

    A no-op for a profile that is gone, already released, or whose order is closed.
    """
    profile = session.scalar(select(EsimProfile).where(EsimProfile.id == profile_id).with_for_update())
    if profile is None:
        return None
    order = session.get(ReplacementOrder, profile.order_id)
    if (
        order is None
        or order.closed_at is not None
        or profile.state not in (P.REQUESTED, P.ALLOCATED, P.ERROR)
        or profile.released_at is not None  # released once: the holder may have its codes; never reorder
    ):
        return profile
    line = session.get(Line, order.line_id)
    holder = session.get(Subscriber, order.subscriber_id)
    assert line is not None
    assert holder is not None
    route = confirmation_route(holder, line, loss_open=_loss_open(session, line))
    if route is None:
        _error(
            session,
            profile,
            EsimNotConfigured(
                "The holder has no contact other than the lost SIM to receive the confirmation code; "
                "record a contact (at a store), then retry.",
                code="ESIM_NO_CONFIRMATION_CHANNEL",
            ),
            step="confirmation channel",
        )
        return profile
    try:
        client = _client(settings)
    except EsimNotConfigured as exc:
        _error(session, profile, exc, step=protocol.DOWNLOAD_ORDER)
        return profile
    step = protocol.DOWNLOAD_ORDER
    try:
        with client:
            if profile.state != P.REQUESTED or profile.error_message is not None:
                step = protocol.CANCEL_ORDER  # a retry starts again: an earlier reply may have been lost
                _reset_at_smdp(client, profile, attempt)
            step = protocol.DOWNLOAD_ORDER
            iccid = client.download_order(
                iccid=profile.iccid,
                eid=profile.eid,
                profile_type=settings.esim_profile_type or None,
                call_id=f"{profile.id}-download-{attempt}-{secrets.token_hex(4)}",
            )
            if iccid != profile.iccid:
                raise SmdpError(f"downloadOrder reserved ICCID …{iccid[-4:]}, not the one asked for.")
            profile.state = P.ALLOCATED
            session.flush()
            step = protocol.CONFIRM_ORDER
            code = new_confirmation_code()
            confirmed = client.confirm_order(
                iccid=profile.iccid,
                release_flag=True,
                confirmation_code=code,
                eid=profile.eid,
                call_id=f"{profile.id}-confirm-{attempt}-{secrets.token_hex(4)}",
            )
    except SmdpError as exc:
        if exc.retryable and _retry_later(session, kind=ORDER_JOB, profile=profile, attempt=attempt):
            _error(session, profile, exc, step=step, keep_state=True)
        else:
            _error(session, profile, exc, step=step)
        return profile
    now = utcnow()
    profile.matching_id = confirmed.matching_id[:64]
    profile.smdp_address = (confirmed.smdp_address or urlsplit(settings.esim_smdp_url).netloc)[:255]
    profile.confirmation_code_hash = confirmation_code_hash(settings, profile, code)
    profile.state, profile.released_at = P.RELEASED, now
    _clear_error(profile)
    session.flush()
    _tell_holder(
        session, settings, order=order, line=line, holder=holder, profile=profile, code=code, route=route
    )
    record(
        session,
        actor=ESIM_ACTOR.label,
        action="esim.profile_released",
        subject_type="replacement_order",
        subject_id=order.reference,
        data={"confirmation_via": route.via},
    )
    return profile


def _reset_at_smdp(client: Es2PlusClient, profile: EsimProfile, attempt: int) -> None:
    """Put the profile back to Available at the SM-DP+, whatever an earlier try left there.

    A refusal means there was nothing to undo (unknown ICCID, or already available).
    """
    try:
        client.cancel_order(
            iccid=profile.iccid,
            final_profile_status_indicator="Available",
            call_id=f"{profile.id}-reset-{attempt}-{secrets.token_hex(4)}",
        )
    except SmdpError as exc:
        if exc.retryable:
            raise
    profile.state = P.REQUESTED
    profile.matching_id = None


def _tell_holder(
    session: Session,
    settings: Settings,
    *,
    order: ReplacementOrder,
    line: Line,
    holder: Subscriber,
    profile: EsimProfile,
    code: str,
    route: ConfirmationRoute,
) -> None:
    """The confirmation code now, on its own channel (never queued: a code is not stored in clear); the
    activation code queued by e-mail when that is not the confirmation code's channel."""
    from simkeep.notifications.service import deliver
    from simkeep.notifications.tasks import DELIVER

    english = str(holder.language) != "zh-CN"
    params: dict[str, object] = {"msisdn": mask_msisdn(line.msisdn), "reference": order.reference}
    sent = deliver(
        session,
        settings,
        subscriber=holder,
        line=None if route.via == "line_sms" else line,
        channel=route.channel,
        address=route.address,
        template="esim_confirmation_code",
        params={**params, "code": code},
    )
    if sent.status == "failed":  # the holder cannot install without it: staff reissue new codes
        profile.error_subject, profile.error_reason = "simkeep", "CONFIRMATION_CODE_NOT_SENT"
        profile.error_message = (
            f"the confirmation code could not be sent by {route.channel} ({sent.error}); issue new codes "
            f"with `simkeep esim retry {order.reference} --reissue`"
        )[:500]
        log.warning("esim.confirmation_code_not_sent", channel=route.channel, error=sent.error)
    if route.activation_by_email:
        text = activation_code(profile)
        assert text is not None
        row = Notification(
            subscriber_id=holder.id,
            line_id=line.id,
            channel="email",
            destination=route.activation_by_email,
            destination_masked=mask_email(route.activation_by_email),
            template="esim_activation_code",
            language=str(holder.language),
            params={
                **{k: str(v) for k, v in params.items()},
                "activation_code": text,
                "confirmation_via": CONFIRMATION_VIA[route.via][1 if english else 0],
                "deadline": order.expires_at.strftime("%Y-%m-%d"),
            },
            status="queued",
        )
        session.add(row)
        session.flush()
        enqueue(session, kind=DELIVER, key=f"notification:{row.id}", payload={"notification_id": row.id})


def close_for_order(session: Session, *, order: ReplacementOrder) -> None:
    """An eSIM order was cancelled or expired: free its profile at the SM-DP+ (a job), retire its SIM.

    A profile never sent to the SM-DP+ is simply forgotten and its SIM goes back to stock; one that was (its
    activation code may have been seen) is cancelled to Unavailable and its SIM retired, so that no code
    handed out can ever load a profile that carries someone else's number.
    """
    profile = profile_of(session, order, for_update=True)
    if profile is None or profile.state in (P.CANCELLED, P.DELETED):
        return
    if profile.state == P.REQUESTED and profile.error_message is None:
        session.delete(profile)
        session.flush()
        return
    sim = session.get(Sim, profile.sim_id)
    if sim is not None and sim.status == SimStatus.RESERVED:
        sim.status = SimStatus.RETIRED
    enqueue(
        session,
        kind=CANCEL_JOB,
        key=f"esim.cancel:{profile.id}:0",
        payload={"profile_id": profile.id, "try": 0},
    )
    session.flush()


def cancel_profile(
    session: Session, settings: Settings, *, profile_id: int, attempt: int = 0
) -> EsimProfile | None:
    """cancelOrder (final status Unavailable) for the profile of a closed order (the ``esim.cancel`` job)."""
    profile = session.scalar(select(EsimProfile).where(EsimProfile.id == profile_id).with_for_update())
    if profile is None or profile.state in (P.CANCELLED, P.DELETED):
        return profile
    order = session.get(ReplacementOrder, profile.order_id)
    try:
        with _client(settings) as client:
            client.cancel_order(
                iccid=profile.iccid,
                final_profile_status_indicator="Unavailable",
                call_id=f"{profile.id}-cancel-{attempt}-{secrets.token_hex(4)}",
            )
    except SmdpError as exc:
        never_ordered = profile.state in (P.REQUESTED, P.ERROR) and profile.released_at is None
        if (
            never_ordered
            and not exc.retryable
            and exc.reason_code in (protocol.REASON_UNKNOWN, protocol.REASON_INVALID_TRANSITION)
        ):
            pass  # the SM-DP+ holds no order for it: nothing to cancel
        elif exc.retryable and _retry_later(session, kind=CANCEL_JOB, profile=profile, attempt=attempt):
            _error(session, profile, exc, step=protocol.CANCEL_ORDER, keep_state=True)
            return profile
        else:
            _error(session, profile, exc, step=protocol.CANCEL_ORDER)
            return profile
    except EsimNotConfigured as exc:
        if profile.released_at is not None or profile.state not in (P.REQUESTED, P.ERROR):
            _error(session, profile, exc, step=protocol.CANCEL_ORDER)
            return profile
        # without an SM-DP+ nothing was ever ordered: nothing to undo
    profile.state, profile.cancelled_at = P.CANCELLED, utcnow()
    _clear_error(profile)
    session.flush()
    record(
        session,
        actor=ESIM_ACTOR.label,
        action="esim.profile_cancelled",
        subject_type="replacement_order",
        subject_id=order.reference if order else profile.order_id,
    )
    return profile


def check_activation_allowed(
    session: Session, settings: Settings, *, order: ReplacementOrder, actor: Actor
) -> None:
    """Refuse to activate an eSIM order unless its profile allows it.

    Installed (or enabled) on the device: anyone the workflow lets activate. With ``esim_activate_on`` =
    ``holder``, the holder may also confirm from the profile's release on.
    """
    profile = profile_of(session, order)
    if profile is None:
        raise EsimProfileNotFound("This eSIM order has no profile yet.")
    if profile.state in INSTALLED:
        return
    if settings.esim_activate_on == "holder" and actor.kind == "line" and profile.state in DOWNLOADABLE:
        return
    raise EsimProfileNotReady(
        f"The eSIM profile is {profile.state}; the number moves once the phone has installed it.",
        state=str(profile.state),
    )


@dataclass(frozen=True)
class HolderView:
    """What the holder's order page shows of the eSIM."""

    state: str
    activation_code: str | None
    confirmation_via: str | None
    failed: bool


def holder_view(session: Session, order: ReplacementOrder) -> HolderView | None:
    """The eSIM part of the holder's order page (None: not an eSIM order or no profile yet)."""
    profile = profile_of(session, order)
    if profile is None:
        return None
    via = None
    if profile.state in DOWNLOADABLE:
        line = session.get(Line, order.line_id)
        holder = session.get(Subscriber, order.subscriber_id)
        if line is not None and holder is not None:
            route = confirmation_route(holder, line, loss_open=False)
            via = route.via if route is not None else None
    return HolderView(str(profile.state), activation_code(profile), via, profile.state == P.ERROR)


def staff_view(session: Session, order: ReplacementOrder) -> dict[str, Any] | None:
    """The profile as staff see it on the console and the CLI (no confirmation code, no matching id)."""
    profile = profile_of(session, order)
    if profile is None:
        return None
    return {
        "iccid_last4": profile.iccid[-4:],
        "state": str(profile.state),
        "smdp_address": profile.smdp_address,
        "error_subject": profile.error_subject,
        "error_reason": profile.error_reason,
        "error_message": profile.error_message,
        "released_at": profile.released_at,
        "installed_at": profile.installed_at,
        "cancelled_at": profile.cancelled_at,
        "last_progress_at": profile.last_progress_at,
    }


def retry(
    session: Session, settings: Settings, *, actor: Actor, reference: str, reissue: bool = False
) -> EsimProfile:
    """Staff retry what stopped: the order at the SM-DP+, the cancellation, or the activation (run now).

    With ``reissue``, a released profile not yet downloaded is ordered again with a new matching id and a new
    confirmation code (the holder lost the codes, or the confirmation code could not be sent); the old
    activation code stops working.
    """
    from simkeep.replacements.service import get_order

    order = get_order(session, actor=actor, reference=reference, for_update=True)
    profile = profile_of(session, order, for_update=True)
    if profile is None:
        raise EsimProfileNotFound("This order has no eSIM profile.")
    record(
        session,
        actor=actor.label,
        action="esim.retry",
        subject_type="replacement_order",
        subject_id=order.reference,
        data={"state": str(profile.state), "reissue": reissue},
    )
    if reissue:
        if order.closed_at is not None or profile.state != P.RELEASED:
            raise EsimProfileNotReady(
                f"Only a released profile not yet on a phone can get new codes; this one is {profile.state}.",
                code="ESIM_CANNOT_REISSUE",
            )
        profile.released_at, profile.state = None, P.ALLOCATED  # reset at the SM-DP+, then order afresh
        profile.error_message = "new codes issued by staff"
        return order_profile(session, settings, profile_id=profile.id) or profile
    if order.closed_at is not None:
        if profile.state in (P.CANCELLED, P.DELETED):
            raise EsimProfileNotReady("The profile is already cancelled.", code="ESIM_NOTHING_TO_RETRY")
        return cancel_profile(session, settings, profile_id=profile.id) or profile
    if profile.state in (P.REQUESTED, P.ALLOCATED, P.ERROR) and profile.released_at is None:
        profile.error_message = profile.error_message or "retried by staff"
        return order_profile(session, settings, profile_id=profile.id) or profile
    if profile.state in INSTALLED:
        enqueue(
            session,
            kind=ACTIVATE_JOB,
            key=f"esim.activate:{order.id}:{secrets.token_hex(4)}",
            payload={"order_id": order.id},
        )
        return profile
    raise EsimProfileNotReady(
        f"Nothing to retry: the profile is {profile.state} and waits for the holder's phone "
        "(--reissue gives the holder new codes).",
        code="ESIM_NOTHING_TO_RETRY",
    )
