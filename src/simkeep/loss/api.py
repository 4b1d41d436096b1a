"""JSON API of loss reports (挂失)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from simkeep.auth.deps import AppSettings, CurrentActor, DbSession
from simkeep.identity.service import Evidence
from simkeep.lines.schemas import LossReportCreate, LossReportRead
from simkeep.loss import service
from simkeep.models import SuspensionReason
from simkeep.network.operations import commit_and_apply
from simkeep.routing import OneTripRoute

router = APIRouter(route_class=OneTripRoute, tags=["loss"])


@router.post(
    "/loss-reports",
    response_model=LossReportRead,
    status_code=201,
    responses={
        200: {"model": LossReportRead, "description": "The SIM was already reported; nothing changed."}
    },
)
def report_loss(
    body: LossReportCreate, session: DbSession, settings: AppSettings, actor: CurrentActor, response: Response
) -> LossReportRead:
    """Report a SIM lost or stolen: it is suspended at once. Works without signing in, with the holder's
    name or document number; a second report of the same loss changes nothing."""
    outcome = service.report_loss(
        session,
        settings,
        actor=actor,
        msisdn=body.msisdn,
        reason=SuspensionReason(body.reason),
        evidence=Evidence(real_name=body.real_name, document_number=body.document_number),
    )
    commit_and_apply(session, settings)
    if not outcome.created:
        response.status_code = 200
    report = outcome.report
    return LossReportRead(
        reference=report.reference,
        status=str(report.status),
        reason=report.reason,
        reported_at=report.reported_at,
        lifted_at=report.lifted_at,
        message="The SIM is suspended: it cannot make calls, send messages or receive codes. "
        "Apply for a replacement SIM to keep the number.",
    )
