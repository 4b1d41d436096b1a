"""Reporting a SIM lost or stolen (挂失) and lifting the suspension (解挂).

Reporting suspends the SIM at once, in simkeep and in the network, with little proof because it makes the
line safer; it is idempotent. Lifting needs strong proof (DOMAIN.md section 5).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.identifiers import normalise_msisdn
from simkeep.identity.service import Evidence, ProofContext, assess, require
from simkeep.lines import repository as lines_repo
from simkeep.lines.service import line_for_actor
from simkeep.loss.errors import LossProofMissing, NoOpenLossReport
from simkeep.models import (
    Line,
    LineStatus,
    LossReport,
    LossReportStatus,
    NetworkOpKind,
    SimStatus,
    SuspensionReason,
)
from simkeep.network import operations
from simkeep.notifications.service import notify
from simkeep.security import new_reference


@dataclass(frozen=True)
class LossOutcome:
    """The open report, and whether this call created it."""

    report: LossReport
    created: bool


def open_report(session: Session, line_id: int) -> LossReport | None:
    """The line's open loss report, if any."""
    return session.scalar(select(LossReport).where(LossReport.open_line_id == line_id))


def _describe(evidence: Evidence, actor: Actor) -> str:
    if actor.is_staff:
        return f"staff request ({actor.role})"
    if actor.kind == "line":
        return "signed-in session: " + ",".join(actor.proof_methods)
    given = [name for name, v in (("name", evidence.real_name), ("document", evidence.document_number)) if v]
    return "biographical: " + "+".join(given)


def report_loss(
    session: Session,
    settings: Settings,
    *,
    actor: Actor,
    msisdn: str,
    reason: SuspensionReason,
    evidence: Evidence,
) -> LossOutcome:
    """Suspend the line's SIM now; a second report for the same loss changes nothing."""
    if actor.kind in ("staff", "line"):
        line: Line | None = line_for_actor(session, actor=actor, msisdn=msisdn, for_update=True)
    else:
        if evidence.real_name is None and evidence.document_number is None:
            raise LossProofMissing("Give the holder's name or identity document number with the number.")
        line = lines_repo.find_by_msisdn(session, normalise_msisdn(msisdn), for_update=True)
        if line is not None and lines_repo.is_recycled(line):
            line = None  # a recycled number answers like an unknown one
        holder = lines_repo.holder_of(session, line) if line else None
        ctx = ProofContext(
            session=session,
            settings=settings,
            line=line,
            subscriber=holder,
            actor=actor,
            action="loss.report",
        )
        require(assess(ctx, evidence), "loss.report", settings)
    assert line is not None
    existing = open_report(session, line.id)
    if existing is not None:
        return LossOutcome(existing, created=False)

    sim = lines_repo.current_sim(session, line)
    report = LossReport(
        reference=new_reference("LR"),
        line_id=line.id,
        sim_id=sim.id if sim else None,
        open_line_id=line.id,
        reason=str(reason),
        status=LossReportStatus.OPEN,
        reported_at=utcnow(),
        reported_by=actor.label,
        report_proof=_describe(evidence, actor),
    )
    session.add(report)
    line.status = LineStatus.SUSPENDED
    line.suspension_reason = reason
    if sim is not None and sim.status == SimStatus.ACTIVE:
        sim.status = SimStatus.SUSPENDED
        operations.schedule(
            session, settings, kind=NetworkOpKind.BAR, line_id=line.id, old_imsi=sim.imsi, actor=actor.label
        )
    session.flush()
    record(
        session,
        actor=actor.label,
        action="loss.reported",
        subject_type="line",
        subject_id=line.id,
        reason=str(reason),
        data={"report": report.reference, "proof": report.report_proof},
    )
    holder_now = lines_repo.holder_of(session, line)
    if holder_now is not None:
        notify(session, settings, subscriber=holder_now, line=line, template="loss_reported")
    return LossOutcome(report, created=True)


def reinstate(
    session: Session, settings: Settings, *, actor: Actor, msisdn: str, evidence: Evidence
) -> LossReport:
    """Lift the loss suspension: the old SIM works again. Needs strong proof."""
    line = line_for_actor(session, actor=actor, msisdn=msisdn, for_update=True)
    holder = lines_repo.holder_of(session, line)
    ctx = ProofContext(
        session=session, settings=settings, line=line, subscriber=holder, actor=actor, action="loss.reinstate"
    )
    assessment = assess(ctx, evidence)
    require(assessment, "loss.reinstate", settings)
    report = open_report(session, line.id)
    if report is None:
        raise NoOpenLossReport("This line is not suspended for loss.")
    report.status = LossReportStatus.LIFTED
    report.open_line_id = None
    report.lifted_at = utcnow()
    report.lifted_by = actor.label
    report.lift_proof = ",".join(assessment.methods)
    line.status = LineStatus.ACTIVE
    line.suspension_reason = None
    sim = lines_repo.current_sim(session, line)
    if sim is not None and sim.status == SimStatus.SUSPENDED:
        sim.status = SimStatus.ACTIVE
        operations.schedule(
            session, settings, kind=NetworkOpKind.UNBAR, line_id=line.id, old_imsi=sim.imsi, actor=actor.label
        )
    session.flush()
    record(
        session,
        actor=actor.label,
        action="loss.reinstated",
        subject_type="line",
        subject_id=line.id,
        data={
            "report": report.reference,
            "proof": report.lift_proof,
            "assurance": assessment.assurance.label,
        },
    )
    if holder is not None:
        notify(session, settings, subscriber=holder, line=line, template="loss_reinstated")
    return report


def close_for_replacement(session: Session, *, line: Line, actor: Actor) -> None:
    """Close the open loss report when a replacement SIM takes over the line."""
    report = open_report(session, line.id)
    if report is None:
        return
    report.status = LossReportStatus.CLOSED_BY_REPLACEMENT
    report.open_line_id = None
    report.lifted_at = utcnow()
    report.lifted_by = actor.label
    report.lift_proof = "replacement activated"
    session.flush()
