"""The eSIM profile of a replacement order: ordered, released, told to the holder, cancelled, retried.

Each test talks ES2+ over HTTP to the SM-DP+ test double; jobs run in the test's transaction as the worker
would run them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from simkeep.auth.actors import CLI
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.esim import protocol as p
from simkeep.esim import service
from simkeep.esim.errors import EsimProfileNotFound, EsimProfileNotReady
from simkeep.models import (
    EsimProfile,
    EsimProfileState,
    Job,
    JobState,
    LineStatus,
    Notification,
    OrderState,
    ReplacementOrder,
    Sim,
    SimKind,
    SimStatus,
)
from simkeep.network.adapter import network_for
from simkeep.notifications.transports import read_outbox
from simkeep.replacements import service as orders
from tests import factories
from tests.esim.conftest import Smdp, esim_settings, holder_actor, paid_esim_order, run_jobs

S = EsimProfileState


def _setup(db: Session, settings: Settings, smdp: Smdp, *, load: bool = True) -> tuple[factories.Holder, Sim]:
    esim = factories.sim(db, kind=SimKind.ESIM)
    if load:
        smdp.load(esim.iccid)
    return factories.holder(db, settings), esim


def _profile(db: Session, order: ReplacementOrder) -> EsimProfile:
    db.expire_all()
    found = db.scalar(select(EsimProfile).where(EsimProfile.order_id == order.id))
    assert found is not None
    return found


def _code_sent(outbox: Path) -> tuple[str, str, str]:
    """(channel, address, code) of the confirmation code message."""
    sent = [m for m in read_outbox(outbox) if m.template == "esim_confirmation_code"]
    assert len(sent) == 1, sent
    found = re.search(r"\b(\d{8})\b", sent[0].body)
    assert found is not None
    return sent[0].channel, sent[0].to, found.group(1)


class TestOrdering:
    """From the SIM's assignment to a released profile and the holder's codes."""

    def test_assigning_the_sim_requests_the_profile(
        self, db: Session, settings: Settings, smdp: Smdp
    ) -> None:
        """Paying an eSIM order assigns an eSIM and records its profile as requested, with a queued job."""
        holder, esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        assert (order.state, order.new_sim_id) == (OrderState.SIM_ASSIGNED, esim.id)
        profile = _profile(db, order)
        assert (profile.state, profile.iccid, profile.sim_id) == (S.REQUESTED, esim.iccid, esim.id)
        assert db.scalar(select(Job).where(Job.kind == service.ORDER_JOB)) is not None
        assert smdp.calls() == []

    def test_job_orders_confirms_and_releases(
        self, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """The job calls downloadOrder and confirmOrder (released, with a code kept only as its HMAC)."""
        holder, esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        profile = _profile(db, order)
        seen = smdp.profile(esim.iccid)
        assert (profile.state, seen["state"]) == (S.RELEASED, "released")
        assert profile.matching_id == seen["matchingId"]
        assert profile.smdp_address == smdp.url.removeprefix("http://")
        assert service.activation_code(profile) == f"LPA:1${profile.smdp_address}${profile.matching_id}$$1"
        assert [c["function"] for c in smdp.calls()] == [p.DOWNLOAD_ORDER, p.CONFIRM_ORDER]
        confirm = smdp.calls()[-1]["body"]
        assert confirm["releaseFlag"] is True
        channel, address, code = _code_sent(outbox)
        assert (channel, address) == ("email", holder.subscriber.contact_email)
        assert confirm["confirmationCode"] == code
        assert profile.confirmation_code_hash == service.confirmation_code_hash(settings, profile, code)
        assert code not in str(profile.confirmation_code_hash)
        assert profile.released_at is not None
        assert order.state == OrderState.SIM_ASSIGNED

    def test_confirmation_code_by_sms_and_activation_code_by_email(
        self, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """With a contact number the confirmation code goes there by SMS, the activation code by e-mail."""
        holder, _esim = _setup(db, settings, smdp)
        holder.subscriber.contact_phone = "+8613911112222"
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        channel, address, code = _code_sent(outbox)
        assert (channel, address) == ("sms", "+8613911112222")
        profile = _profile(db, order)
        mails = [m for m in read_outbox(outbox) if m.template == "esim_activation_code"]
        assert len(mails) == 1
        assert mails[0].to == holder.subscriber.contact_email
        text = service.activation_code(profile)
        assert text is not None
        assert text in mails[0].body
        assert code not in mails[0].body
        stored = db.scalars(
            select(Notification).where(Notification.template == "esim_confirmation_code")
        ).all()
        assert all(code not in str(n.params) for n in stored)

    def test_no_channel_but_the_lost_sim(self, db: Session, settings: Settings, smdp: Smdp) -> None:
        """A holder whose only contact is the lost (suspended) SIM gets no code: the profile waits in error,
        and nothing is asked of the SM-DP+."""
        holder, _esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        holder.subscriber.contact_email = None
        holder.line.status = LineStatus.SUSPENDED
        run_jobs(db, settings)
        profile = _profile(db, order)
        assert (profile.state, profile.error_reason) == (S.ERROR, "ESIM_NO_CONFIRMATION_CHANNEL")
        assert smdp.calls() == []

    def test_not_configured(self, db: Session, settings: Settings, smdp: Smdp, outbox: Path) -> None:
        """With no SM-DP+ configured the profile is left in error ESIM_NOT_CONFIGURED; the order waits."""
        bare = esim_settings(settings.database_url, outbox, "")
        holder, _esim = _setup(db, bare, smdp)
        order = paid_esim_order(db, bare, holder)
        run_jobs(db, bare)
        profile = _profile(db, order)
        assert (profile.state, profile.error_reason) == (S.ERROR, "ESIM_NOT_CONFIGURED")
        assert "SIMKEEP_ESIM_SMDP_URL" in (profile.error_message or "")
        assert order.state == OrderState.SIM_ASSIGNED
        orders.cancel(db, actor=holder_actor(holder.line), reference=order.reference, reason="")
        run_jobs(db, bare)
        assert _profile(db, order).state == S.CANCELLED  # nothing was ordered, nothing to undo


class TestBadAnswers:
    """Refusals and timeouts leave the order waiting and the profile showing why; retries recover."""

    def test_unknown_iccid(self, db: Session, settings: Settings, smdp: Smdp) -> None:
        """An ICCID the SM-DP+ does not know: profile in error 8.2.1 / 3.9, order and number untouched."""
        holder, esim = _setup(db, settings, smdp, load=False)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        profile = _profile(db, order)
        assert (profile.state, profile.error_subject, profile.error_reason) == (S.ERROR, "8.2.1", "3.9")
        assert "unknown ICCID" in (profile.error_message or "")
        assert order.state == OrderState.SIM_ASSIGNED
        assert db.get(Sim, esim.id).status == SimStatus.RESERVED  # type: ignore[union-attr]
        seen = network_for(db).lookup(holder.sim.imsi)
        assert seen is not None
        assert seen.msisdn == holder.msisdn

    def test_failed_confirm_order(self, db: Session, settings: Settings, smdp: Smdp) -> None:
        """A Failed confirmOrder leaves the profile in error with the SM-DP+'s codes and message."""
        holder, _esim = _setup(db, settings, smdp)
        smdp.fault(p.CONFIRM_ORDER, subjectCode="8.2.7", reasonCode="2.1", message="code rejected")
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        profile = _profile(db, order)
        assert (profile.state, profile.error_subject, profile.error_reason) == (S.ERROR, "8.2.7", "2.1")
        assert "code rejected" in (profile.error_message or "")

    def test_timeout_is_retried_and_the_retry_starts_over(
        self, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """confirmOrder timing out leaves the profile waiting with the reason and a later try queued; that
        try puts the profile back to Available at the SM-DP+ and orders it afresh."""
        holder, esim = _setup(db, settings, smdp)
        fast = esim_settings(settings.database_url, outbox, smdp.url, esim_timeout_s=0.3)
        smdp.fault(p.CONFIRM_ORDER, delay_s=1.0)
        order = paid_esim_order(db, fast, holder)
        run_jobs(db, fast)
        profile = _profile(db, order)
        assert profile.state == S.ALLOCATED
        assert profile.error_reason == "Failed"
        assert (profile.error_message or "").startswith("confirmOrder")
        later = db.scalars(
            select(Job).where(Job.kind == service.ORDER_JOB, Job.state == JobState.QUEUED)
        ).all()
        assert len(later) == 1
        assert later[0].run_at > utcnow()
        db.execute(update(Job).where(Job.id == later[0].id).values(run_at=utcnow() - timedelta(seconds=1)))
        run_jobs(db, fast)
        profile = _profile(db, order)
        assert (profile.state, profile.error_message) == (S.RELEASED, None)
        functions = [c["function"] for c in smdp.calls()]
        assert functions[-3:] == [p.CANCEL_ORDER, p.DOWNLOAD_ORDER, p.CONFIRM_ORDER]
        assert smdp.calls()[-3]["body"]["finalProfileStatusIndicator"] == "Available"
        assert smdp.profile(esim.iccid)["state"] == "released"

    def test_timeouts_past_the_last_try_end_in_error(
        self, db: Session, settings: Settings, smdp: Smdp
    ) -> None:
        """A timeout on the last try leaves the profile in error for staff."""
        holder, _esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        smdp.fault(p.DOWNLOAD_ORDER, http_status=503)
        profile = _profile(db, order)
        service.order_profile(db, settings, profile_id=profile.id, attempt=service.MAX_TRIES - 1)
        profile = _profile(db, order)
        assert (profile.state, profile.error_subject) == (S.ERROR, "ESIM_SMDP_UNAVAILABLE")

    def test_staff_retry_after_a_refusal(self, db: Session, settings: Settings, smdp: Smdp) -> None:
        """Once the cause is fixed (the profile loaded at the SM-DP+), a staff retry releases the profile."""
        holder, esim = _setup(db, settings, smdp, load=False)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        assert _profile(db, order).state == S.ERROR
        smdp.load(esim.iccid)
        service.retry(db, settings, actor=CLI, reference=order.reference)
        profile = _profile(db, order)
        assert (profile.state, profile.error_message) == (S.RELEASED, None)

    def test_nothing_to_retry_while_waiting_for_the_phone(
        self, db: Session, settings: Settings, smdp: Smdp
    ) -> None:
        """A released profile has nothing to retry: refused with ESIM_NOTHING_TO_RETRY, nothing called."""
        holder, _esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        calls = len(smdp.calls())
        with pytest.raises(EsimProfileNotReady) as refused:
            service.retry(db, settings, actor=CLI, reference=order.reference)
        assert refused.value.code == "ESIM_NOTHING_TO_RETRY"
        assert len(smdp.calls()) == calls


class TestClosing:
    """Cancelled and expired eSIM orders free their profile at the SM-DP+."""

    def test_cancel_releases_the_profile(self, db: Session, settings: Settings, smdp: Smdp) -> None:
        """Cancelling a released order cancels its profile (Unavailable) and retires the eSIM."""
        holder, esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        orders.cancel(
            db, actor=holder_actor(holder.line), reference=order.reference, reason="changed my mind"
        )
        run_jobs(db, settings)
        profile = _profile(db, order)
        assert (profile.state, smdp.profile(esim.iccid)["state"]) == (S.CANCELLED, "unavailable")
        assert profile.cancelled_at is not None
        assert db.get(Sim, esim.id).status == SimStatus.RETIRED  # type: ignore[union-attr]
        assert smdp.calls()[-1]["body"]["finalProfileStatusIndicator"] == "Unavailable"

    def test_cancel_before_ordering_returns_the_esim_to_stock(
        self, db: Session, settings: Settings, smdp: Smdp
    ) -> None:
        """An order cancelled before its profile was ordered asks nothing of the SM-DP+; the eSIM is stock."""
        holder, esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        orders.cancel(db, actor=holder_actor(holder.line), reference=order.reference, reason="")
        run_jobs(db, settings)
        db.expire_all()
        assert db.scalar(select(EsimProfile).where(EsimProfile.order_id == order.id)) is None
        assert db.get(Sim, esim.id).status == SimStatus.IN_STOCK  # type: ignore[union-attr]
        assert smdp.calls() == []

    def test_cancel_after_a_refused_order_needs_nothing_undone(
        self, db: Session, settings: Settings, smdp: Smdp
    ) -> None:
        """A profile the SM-DP+ never knew (refused 3.9) is marked cancelled when its order is cancelled."""
        holder, _esim = _setup(db, settings, smdp, load=False)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        assert _profile(db, order).state == S.ERROR
        orders.cancel(db, actor=holder_actor(holder.line), reference=order.reference, reason="")
        run_jobs(db, settings)
        profile = _profile(db, order)
        assert (profile.state, profile.error_message) == (S.CANCELLED, None)

    def test_expiry_cancels_the_profile(self, db: Session, settings: Settings, smdp: Smdp) -> None:
        """An eSIM order past its activation deadline expires and its profile is cancelled."""
        holder, esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        assert order.reference in orders.expire_overdue(db, now=utcnow() + timedelta(days=31))
        run_jobs(db, settings)
        assert _profile(db, order).state == S.CANCELLED
        assert smdp.profile(esim.iccid)["state"] == "unavailable"

    def test_installed_profile_cannot_be_cancelled_and_says_so(
        self, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """When the SM-DP+ refuses the cancellation (the profile is on a phone), the profile shows it."""
        holder, _esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        _channel, _to, code = _code_sent(outbox)
        smdp.download(_profile(db, order).matching_id or "", code, deliver=False)
        orders.cancel(db, actor=holder_actor(holder.line), reference=order.reference, reason="")
        run_jobs(db, settings)
        profile = _profile(db, order)
        assert (profile.state, profile.error_subject, profile.error_reason) == (S.ERROR, "8.2.1", "3.5")
        assert order.state == OrderState.CANCELLED


class TestActivationGuard:
    """check_activation_allowed, which activation calls for eSIM orders."""

    def test_released_is_not_enough(self, db: Session, settings: Settings, smdp: Smdp) -> None:
        """Before the phone installed the profile, activation is refused with ESIM_PROFILE_NOT_READY."""
        holder, _esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        for actor in (service.ESIM_ACTOR, holder_actor(holder.line)):
            with pytest.raises(EsimProfileNotReady):
                service.check_activation_allowed(db, settings, order=order, actor=actor)

    def test_installed_allows(self, db: Session, settings: Settings, smdp: Smdp) -> None:
        """An installed profile allows activation."""
        holder, _esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        _profile(db, order).state = S.INSTALLED
        service.check_activation_allowed(db, settings, order=order, actor=service.ESIM_ACTOR)

    def test_holder_mode_lets_the_holder_confirm_once_released(
        self, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """With activation on the holder's confirmation, the holder (only) may activate a released profile."""
        holder_mode = esim_settings(settings.database_url, outbox, smdp.url, esim_activate_on="holder")
        holder, _esim = _setup(db, holder_mode, smdp)
        order = paid_esim_order(db, holder_mode, holder)
        run_jobs(db, holder_mode)
        service.check_activation_allowed(db, holder_mode, order=order, actor=holder_actor(holder.line))
        with pytest.raises(EsimProfileNotReady):
            service.check_activation_allowed(db, holder_mode, order=order, actor=service.ESIM_ACTOR)

    def test_no_profile(self, db: Session, settings: Settings, smdp: Smdp) -> None:
        """An order without a profile is refused with ESIM_PROFILE_NOT_FOUND."""
        holder, _esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder, pay=False)
        with pytest.raises(EsimProfileNotFound):
            service.check_activation_allowed(db, settings, order=order, actor=service.ESIM_ACTOR)


class TestReissue:
    """New codes for a released profile: the holder lost them, or the confirmation code was not sent."""

    def test_reissue_gives_new_codes(self, db: Session, settings: Settings, smdp: Smdp, outbox: Path) -> None:
        """A reissue cancels the old order (Available) and orders again: new matching id, new code."""
        holder, esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        first = _profile(db, order).matching_id
        service.retry(db, settings, actor=CLI, reference=order.reference, reissue=True)
        profile = _profile(db, order)
        assert profile.state == S.RELEASED
        assert profile.matching_id not in (None, first)
        assert smdp.profile(esim.iccid)["matchingId"] == profile.matching_id
        codes = [m for m in read_outbox(outbox) if m.template == "esim_confirmation_code"]
        assert len(codes) == 2
        assert codes[0].body != codes[1].body

    def test_reissue_refused_once_installed(self, db: Session, settings: Settings, smdp: Smdp) -> None:
        """A profile past its release cannot get new codes: ESIM_CANNOT_REISSUE, nothing called."""
        holder, _esim = _setup(db, settings, smdp)
        order = paid_esim_order(db, settings, holder)
        run_jobs(db, settings)
        _profile(db, order).state = S.INSTALLED
        db.flush()
        calls = len(smdp.calls())
        with pytest.raises(EsimProfileNotReady) as refused:
            service.retry(db, settings, actor=CLI, reference=order.reference, reissue=True)
        assert refused.value.code == "ESIM_CANNOT_REISSUE"
        assert len(smdp.calls()) == calls

    def test_unsent_confirmation_code_is_shown(
        self, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """When the confirmation code cannot be sent, the released profile says so, for staff to reissue."""
        broken = esim_settings(settings.database_url, outbox, smdp.url, email_transport="smtp", smtp_port=1)
        holder, _esim = _setup(db, broken, smdp)
        order = paid_esim_order(db, broken, holder)
        run_jobs(db, broken)
        profile = _profile(db, order)
        assert (profile.state, profile.error_reason) == (S.RELEASED, "CONFIRMATION_CODE_NOT_SENT")
        assert "--reissue" in (profile.error_message or "")
