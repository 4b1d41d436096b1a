"""The SM-DP+'s handleDownloadProgressInfo: record each event once and move the profile forward only.

An event is kept once (``iccid`` + ``notificationPointId`` + ``timestamp``): a repeated one is answered as a
success and changes nothing. An event that would move the profile backwards (it arrived late, out of order)
is kept and changes nothing. A failed step puts the profile in ``error`` with its codes, where staff see it;
a later success of the device (it may retry) moves it on again. When the profile is installed and
``esim_activate_on`` is ``installed``, the order's activation is queued (``esim.activate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.config import Settings
from simkeep.errors import InvalidInput
from simkeep.esim import protocol
from simkeep.esim.service import ACTIVATE_JOB, ESIM_ACTOR, RANK
from simkeep.jobs.service import enqueue
from simkeep.logging import get_logger
from simkeep.models import EsimProfile, EsimProfileState, EsimProgressEvent, ReplacementOrder

log = get_logger("simkeep.esim")
P = EsimProfileState

#: The state a successful notification point brings the profile to.
REACHED = {protocol.POINT_BPP_DOWNLOAD: P.DOWNLOADED, protocol.POINT_BPP_INSTALLATION: P.INSTALLED}


@dataclass(frozen=True)
class ProgressEvent:
    """A validated handleDownloadProgressInfo request."""

    iccid: str
    eid: str | None
    point: int
    status: str
    codes: dict[str, str]
    timestamp: datetime
    call_id: str


def parse(body: object) -> ProgressEvent:
    """Validate the request; a malformed one is refused with INVALID_INPUT (nothing is recorded)."""
    if not isinstance(body, dict):
        raise InvalidInput(
            "The body is not a JSON object.", code="ESIM_CALLBACK_INVALID", reason=protocol.REASON_INVALID
        )
    header = body.get("header")
    call_id = header.get("functionCallIdentifier") if isinstance(header, dict) else None
    if not isinstance(call_id, str) or not call_id or len(call_id) > 64:
        raise InvalidInput(
            "header.functionCallIdentifier is missing.",
            code="ESIM_CALLBACK_INVALID",
            reason=protocol.REASON_MISSING,
        )
    iccid = body.get("iccid")
    if isinstance(iccid, str) and iccid.upper().endswith("F"):
        iccid = iccid[:-1]  # some SM-DP+s pad 19-digit ICCIDs with F
    if not (isinstance(iccid, str) and iccid.isdigit() and 18 <= len(iccid) <= 20):
        raise InvalidInput(
            "iccid is missing or not an ICCID.", code="ESIM_CALLBACK_INVALID", reason=protocol.REASON_INVALID
        )
    point = body.get("notificationPointId")
    if isinstance(point, str) and point.isdigit():
        point = int(point)
    if not isinstance(point, int) or isinstance(point, bool) or not 0 <= point < 1000:
        raise InvalidInput(
            "notificationPointId is missing.", code="ESIM_CALLBACK_INVALID", reason=protocol.REASON_INVALID
        )
    status_obj = body.get("notificationPointStatus")
    status = status_obj.get("status") if isinstance(status_obj, dict) else None
    if status not in protocol.STATUSES:
        raise InvalidInput(
            "notificationPointStatus.status is missing.",
            code="ESIM_CALLBACK_INVALID",
            reason=protocol.REASON_INVALID,
        )
    assert isinstance(status_obj, dict)
    raw_codes = status_obj.get("statusCodeData")
    codes = {k: str(v)[:200] for k, v in raw_codes.items()} if isinstance(raw_codes, dict) else {}
    try:
        stamp = datetime.fromisoformat(str(body.get("timestamp")).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            "timestamp is not an ISO 8601 time.",
            code="ESIM_CALLBACK_INVALID",
            reason=protocol.REASON_INVALID,
        ) from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    eid = body.get("eid")
    return ProgressEvent(
        iccid=iccid,
        eid=eid if isinstance(eid, str) and eid.isdigit() and len(eid) == 32 else None,
        point=point,
        status=str(status),
        codes=codes,
        timestamp=stamp.astimezone(UTC),
        call_id=call_id,
    )


@dataclass(frozen=True)
class Outcome:
    """What became of one event.

    ``applied``, ``duplicate``, ``out_of_order``, ``ignored`` (a cancelled profile) or ``unknown_iccid``.
    """

    result: str
    state: str | None = None


def record_progress(session: Session, settings: Settings, body: dict[str, Any]) -> Outcome:
    """Record one handleDownloadProgressInfo and apply it to the profile (the caller commits)."""
    event = parse(body)
    profile = session.scalar(select(EsimProfile).where(EsimProfile.iccid == event.iccid).with_for_update())
    row = EsimProgressEvent(
        profile_id=profile.id if profile else None,
        iccid=event.iccid,
        eid=event.eid,
        notification_point_id=event.point,
        status=event.status[:32],
        event_timestamp=event.timestamp,
        function_call_identifier=event.call_id,
        payload=body,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        log.info("esim.progress_duplicate", point=event.point)
        return Outcome("duplicate", str(profile.state)) if profile else Outcome("unknown_iccid")
    if profile is None:
        log.warning("esim.progress_unknown_iccid", iccid_last4=event.iccid[-4:], point=event.point)
        record(
            session,
            actor="smdp",
            action="esim.progress_unknown_iccid",
            subject_type="esim_progress_event",
            subject_id=row.id,
            data={"iccid_last4": event.iccid[-4:], "point": event.point, "status": event.status},
        )
        return Outcome("unknown_iccid")
    return _apply(session, settings, profile, event)


def _apply(session: Session, settings: Settings, profile: EsimProfile, event: ProgressEvent) -> Outcome:
    order = session.get(ReplacementOrder, profile.order_id)
    assert order is not None
    if profile.state in (P.CANCELLED, P.DELETED) or profile.released_at is None:
        return Outcome("ignored", str(profile.state))
    if profile.last_progress_at is None or event.timestamp > profile.last_progress_at:
        profile.last_progress_at = event.timestamp
    profile.eid = profile.eid or event.eid
    success = event.status in (protocol.SUCCESS, protocol.WARNING)
    current = RANK.get(profile.state, RANK[P.RELEASED])  # a profile in error was released: it may move on
    if not success:
        if current >= RANK[P.INSTALLED] or (
            profile.state == P.ERROR and _later_than_error(session, profile, event)
        ):
            return Outcome("out_of_order", str(profile.state))
        profile.state = P.ERROR
        profile.error_subject = (event.codes.get("subjectCode") or "")[:100] or None
        profile.error_reason = (event.codes.get("reasonCode") or "")[:100] or None
        profile.error_message = (
            f"device step {event.point} failed: {event.codes.get('message') or event.status}"
        )[:500]
        session.flush()
        record(
            session,
            actor="smdp",
            action="esim.device_step_failed",
            subject_type="replacement_order",
            subject_id=order.reference,
            reason=profile.error_message,
            data={"point": event.point, "subject": profile.error_subject, "reason": profile.error_reason},
        )
        return Outcome("applied", str(profile.state))
    target = REACHED.get(event.point)
    if target is None:
        return Outcome("applied", str(profile.state))  # a step with no state of its own (eligibility check)
    if profile.state != P.ERROR and RANK[target] <= current:
        return Outcome("out_of_order", str(profile.state))
    profile.state = target
    profile.error_subject = profile.error_reason = profile.error_message = None
    if target == P.INSTALLED:
        profile.installed_at = event.timestamp
    session.flush()
    record(
        session,
        actor="smdp",
        action=f"esim.profile_{target}",
        subject_type="replacement_order",
        subject_id=order.reference,
    )
    if target == P.INSTALLED and settings.esim_activate_on == "installed" and order.closed_at is None:
        enqueue(session, kind=ACTIVATE_JOB, key=f"esim.activate:{order.id}", payload={"order_id": order.id})
    return Outcome("applied", str(profile.state))


def _later_than_error(session: Session, profile: EsimProfile, event: ProgressEvent) -> bool:
    """Whether a success later than this failure was already recorded (the failure arrived late)."""
    newer = session.scalar(
        select(EsimProgressEvent.id)
        .where(
            EsimProgressEvent.profile_id == profile.id,
            EsimProgressEvent.event_timestamp > event.timestamp,
            EsimProgressEvent.status.in_([protocol.SUCCESS, protocol.WARNING]),
        )
        .limit(1)
    )
    return newer is not None


def activate_installed(session: Session, settings: Settings, *, order_id: int) -> str:
    """Activate the order whose profile is installed (the ``esim.activate`` job); returns what happened.

    A retryable network failure is raised (the job is tried again with backoff); any other refusal is kept on
    the profile, where staff see it, and the order stays as it was.
    """
    from simkeep.errors import DomainError
    from simkeep.network.adapter import NetworkError
    from simkeep.replacements import activation

    order = session.get(ReplacementOrder, order_id)
    if order is None or order.closed_at is not None:
        return "closed"
    profile = session.scalar(select(EsimProfile).where(EsimProfile.order_id == order.id).with_for_update())
    try:
        with session.begin_nested():
            activation.activate(session, settings, actor=ESIM_ACTOR, reference=order.reference)
    except NetworkError as exc:
        if exc.retryable:
            raise
        _activation_refused(session, order, profile, exc)
        return "refused"
    except DomainError as exc:
        _activation_refused(session, order, profile, exc)
        return "refused"
    return "activated"


def _activation_refused(
    session: Session, order: ReplacementOrder, profile: EsimProfile | None, exc: Exception
) -> None:
    code = getattr(exc, "code", type(exc).__name__)
    if profile is not None:
        profile.error_subject, profile.error_reason = "simkeep", str(code)[:100]
        profile.error_message = f"activation: {exc}"[:500]
    session.flush()
    record(
        session,
        actor=ESIM_ACTOR.label,
        action="esim.activation_failed",
        subject_type="replacement_order",
        subject_id=order.reference,
        reason=str(exc)[:500],
        data={"code": str(code)},
    )
    log.warning("esim.activation_failed", code=str(code))
