"""JSON API of lines: status, SIM history, audit trail, reinstatement, service password reset."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.audit.service import entries_for
from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession, LineActor, SignedInActor, require_staff
from simkeep.identity import passwords
from simkeep.identity.service import Evidence
from simkeep.lines import protection, repository
from simkeep.lines.schemas import (
    AuditRead,
    ContactsChange,
    ContactsRead,
    LineRead,
    LockChange,
    LossReportRead,
    Reinstatement,
    ServicePasswordReset,
    SimChangeRead,
    SimRead,
)
from simkeep.lines.service import line_for_actor
from simkeep.loss import service as loss_service
from simkeep.masking import mask_email, mask_iccid, mask_msisdn
from simkeep.models import Line, Plan, ReplacementOrder, Sim, StaffRole
from simkeep.network.operations import commit_and_apply
from simkeep.routing import OneTripRoute

router = APIRouter(route_class=OneTripRoute, prefix="/lines", tags=["lines"])
Clerk = Annotated[Actor, Depends(require_staff(StaffRole.CLERK))]
Reviewer = Annotated[Actor, Depends(require_staff(StaffRole.REVIEWER, StaffRole.CLERK))]


def to_read(session: Session, line: Line) -> LineRead:
    """The API view of a line."""
    sim = repository.current_sim(session, line)
    plan = session.get(Plan, line.plan_id)
    order_ref = session.scalar(
        select(ReplacementOrder.reference).where(ReplacementOrder.open_line_id == line.id)
    )
    report = loss_service.open_report(session, line.id)
    return LineRead(
        msisdn=line.msisdn,
        status=str(line.status),
        suspension_reason=str(line.suspension_reason) if line.suspension_reason else None,
        plan=plan.code if plan else "",
        sim_change_lock=line.sim_change_lock,
        sim=SimRead(iccid=mask_iccid(sim.iccid), kind=str(sim.kind), status=str(sim.status)) if sim else None,
        activated_at=line.activated_at,
        last_activity_at=line.last_activity_at,
        open_replacement=order_ref,
        open_loss_report=report.reference if report else None,
    )


@router.get("/{msisdn}", response_model=LineRead)
def get_line(msisdn: str, session: DbSession, actor: SignedInActor) -> LineRead:
    """A line's status and SIM (the holder's own, or any for staff)."""
    line = line_for_actor(session, actor=actor, msisdn=msisdn, allow_recycled=True)
    return to_read(session, line)


@router.get("/{msisdn}/sim-changes", response_model=list[SimChangeRead])
def sim_changes(msisdn: str, session: DbSession, actor: SignedInActor) -> list[SimChangeRead]:
    """The line's SIM changes, newest first."""
    line = line_for_actor(session, actor=actor, msisdn=msisdn, allow_recycled=True)
    out = []
    for change in repository.sim_changes(session, line.id):
        old = session.get(Sim, change.old_sim_id) if change.old_sim_id else None
        new = session.get(Sim, change.new_sim_id)
        order = session.get(ReplacementOrder, change.order_id) if change.order_id else None
        assert new is not None
        out.append(
            SimChangeRead(
                changed_at=change.changed_at,
                channel=str(change.channel),
                old_iccid=mask_iccid(old.iccid) if old else None,
                new_iccid=mask_iccid(new.iccid),
                order=order.reference if order else None,
            )
        )
    return out


@router.get("/{msisdn}/audit", response_model=list[AuditRead])
def audit_trail(msisdn: str, session: DbSession, actor: Reviewer) -> list[AuditRead]:
    """The line's audit entries, newest first (staff)."""
    line = line_for_actor(session, actor=actor, msisdn=msisdn, allow_recycled=True)
    return [
        AuditRead(id=e.id, at=e.at, actor=e.actor, action=e.action, reason=e.reason, data=e.data)
        for e in entries_for(session, subject_type="line", subject_id=line.id)
    ]


@router.post("/{msisdn}/reinstatement", response_model=LossReportRead)
def reinstate(
    msisdn: str, body: Reinstatement, session: DbSession, settings: AppSettings, actor: SignedInActor
) -> LossReportRead:
    """Lift a loss suspension (解挂): needs strong proof, such as a clerk's in-person check."""
    report = loss_service.reinstate(
        session,
        settings,
        actor=actor,
        msisdn=msisdn,
        evidence=Evidence(
            service_password=body.service_password, in_person_document_number=body.in_person_document_number
        ),
    )
    commit_and_apply(session, settings)
    return LossReportRead(
        reference=report.reference,
        status=str(report.status),
        reason=report.reason,
        reported_at=report.reported_at,
        lifted_at=report.lifted_at,
        message="The suspension is lifted; the SIM works again.",
    )


@router.post("/{msisdn}/service-password", status_code=204)
def set_service_password(
    msisdn: str, body: ServicePasswordReset, session: DbSession, settings: AppSettings, actor: Clerk
) -> None:
    """Set a new service password for a holder checked in person at a counter (clerks)."""
    line = line_for_actor(session, actor=actor, msisdn=msisdn, for_update=True)
    passwords.set_in_person(
        session,
        settings,
        actor=actor,
        line=line,
        document_number=body.in_person_document_number,
        new_password=body.new_password,
    )
    session.commit()


@router.put("/{msisdn}/sim-change-lock", response_model=LineRead)
def sim_change_lock(
    msisdn: str, body: LockChange, session: DbSession, settings: AppSettings, actor: LineActor
) -> LineRead:
    """Turn the SIM-change lock on (any signed-in holder) or off (one-time code); the holder is told."""
    line = protection.set_sim_change_lock(
        session,
        settings,
        actor=actor,
        msisdn=msisdn,
        on=body.on,
        evidence=Evidence(one_time_code=body.one_time_code),
    )
    session.commit()
    return to_read(session, line)


@router.put("/{msisdn}/contacts", response_model=ContactsRead)
def change_contacts(
    msisdn: str, body: ContactsChange, session: DbSession, settings: AppSettings, actor: LineActor
) -> ContactsRead:
    """Change the registered contacts (one-time code to a current contact); the old contacts are told."""
    holder = protection.change_contacts(
        session,
        settings,
        actor=actor,
        msisdn=msisdn,
        contact_email=body.contact_email,
        contact_phone=body.contact_phone,
        evidence=Evidence(one_time_code=body.one_time_code),
    )
    session.commit()
    return ContactsRead(
        contact_email=mask_email(holder.contact_email) if holder.contact_email else None,
        contact_phone=mask_msisdn(holder.contact_phone) if holder.contact_phone else None,
    )
