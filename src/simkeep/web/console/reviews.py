"""The review queue: online orders the automatic checks could not decide, oldest first.

The review page shows the document photo and the selfie side by side (each image served by an audited
route), the checks' verdicts and scores, and the holder's name and number masked until the reviewer reveals
them, which is audited too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.identity import evidence as evidence_service
from simkeep.identity.service import recent_failures
from simkeep.lines import repository as lines_repo
from simkeep.masking import mask_document, mask_msisdn
from simkeep.models import Line, OrderState, StaffRole
from simkeep.replacements import online
from simkeep.replacements import service as orders
from simkeep.web import i18n
from simkeep.web.console.common import mask_name, note_refusal, page, t
from simkeep.web.console.menu import register
from simkeep.web.deps import ReviewerPage
from simkeep.web.forms import Form, keep_or_discard, read_form
from simkeep.web.templating import language_of

router = APIRouter()
register("/console/reviews", "console.reviews.menu", StaffRole.REVIEWER)

i18n.add(
    {
        "console.reviews.menu": ("人工审核", "Review queue"),
        "console.reviews.title": ("待审核的线上申请", "Online orders in review"),
        "console.reviews.empty": ("没有待审核的申请。", "Nothing waits for review."),
        "console.reviews.reference": ("申请编号", "Order"),
        "console.reviews.channel": ("渠道", "Channel"),
        "console.reviews.submitted": ("提交时间", "Submitted"),
        "console.reviews.reasons": ("转人工原因", "Why it is here"),
        "console.reviews.open": ("审核", "Review"),
        "console.review.title": ("审核申请 {ref}", "Review {ref}"),
        "console.review.applicant": ("申请人", "Applicant"),
        "console.review.name": ("姓名", "Name"),
        "console.review.document": ("登记证件", "Registered document"),
        "console.review.reveal": ("显示完整信息（将被记录）", "Reveal (this is recorded)"),
        "console.review.revealed": (
            "已显示完整信息，此操作已记入审计日志。",
            "Revealed; this was recorded in the audit log.",
        ),
        "console.review.photos": ("证件照片与自拍", "Document photo and selfie"),
        "console.review.photo.document_photo": ("证件照片", "Document photo"),
        "console.review.photo.selfie": ("自拍", "Selfie"),
        "console.review.photo_purged": (
            "照片已在保存期满后删除。",
            "The photo was deleted after its retention period.",
        ),
        "console.review.checks": ("自动核验结果", "Automatic checks"),
        "console.review.check": ("核验项", "Check"),
        "console.review.verdict": ("结论", "Verdict"),
        "console.review.score": ("分数", "Score"),
        "console.review.details": ("说明", "Details"),
        "console.review.failed_recently": ("近期失败的身份验证次数", "Failed proofs recently"),
        "console.review.timeline": ("处理记录", "Timeline"),
        "console.review.decide": ("审核决定", "Decision"),
        "console.review.reason": ("原因（将告知申请人）", "Reason (the applicant is told)"),
        "console.review.approve": ("通过", "Approve"),
        "console.review.reject": ("拒绝", "Reject"),
        "console.review.done_approved": ("申请 {ref} 已通过。", "Order {ref} approved."),
        "console.review.done_rejected": ("申请 {ref} 已拒绝。", "Order {ref} rejected."),
        "console.review.not_in_review": ("此申请不在审核中：{state}", "This order is not in review: {state}"),
        "check.document": ("证件号码", "Document number"),
        "check.ocr": ("证件识别（OCR）", "Document reading (OCR)"),
        "check.face": ("人脸比对", "Face match"),
        "check.risk": ("风险信号", "Risk signals"),
        "verdict.pass": ("通过", "Pass"),
        "verdict.review": ("需人工", "Review"),
        "verdict.reject": ("不通过", "Reject"),
        "risk.contact_changed_recently": ("近期更改过联系方式", "Contacts changed recently"),
        "risk.recent_failed_proofs": ("近期有失败的身份验证", "Recent failed proofs"),
        "risk.many_applications_from_address": ("同一地址多次申请", "Many applications from this address"),
    }
)


@router.get("/console/reviews")
def queue(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    actor: ReviewerPage,
    *,
    done: Annotated[str, Query(max_length=20)] = "",
    outcome: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    """Orders in review, oldest first."""
    rows = []
    for order in orders.list_orders(session, actor=actor, state=OrderState.IN_REVIEW, limit=200):
        line = session.get(Line, order.line_id)
        reasons = sorted(
            {
                r
                for c in online.checks_of(session, order)
                if c.verdict == "review"
                for r in c.reasons
                if " " not in r
            }
        )
        rows.append((order, mask_msisdn(line.msisdn) if line else "—", reasons))
    flash = ""
    if done and outcome in ("approved", "rejected"):
        flash = t(request, f"console.review.done_{outcome}", ref=done)
    return page(request, settings, actor, "console/reviews.html", rows=rows, flash=flash)


def _review_page(
    request: Request,
    session: Session,
    settings: Settings,
    actor: Actor,
    reference: str,
    *,
    revealed: bool = False,
    form: Form | None = None,
    status_code: int = 200,
) -> Response:
    order = orders.get_order(session, actor=actor, reference=reference)
    line = session.get(Line, order.line_id)
    assert line is not None
    holder = lines_repo.holder_of(session, line)
    assert holder is not None
    checks = online.checks_of(session, order)
    form = form or Form({})
    return page(
        request,
        settings,
        actor,
        "console/review.html",
        status_code=status_code,
        order=order,
        name=holder.real_name if revealed else mask_name(holder.real_name),
        msisdn=line.msisdn if revealed else mask_msisdn(line.msisdn),
        document=mask_document(holder.document_number_last4),
        revealed=revealed,
        checks=[c for c in checks if c.kind != "risk"],
        risks=[r for c in checks if c.kind == "risk" for r in c.reasons],
        evidence=online.evidence_of(session, order),
        failed_recently=recent_failures(session, settings, order.line_id),
        timeline=orders.timeline(session, order),
        errors=form.errors,
        values=form.values,
    )


@router.get("/console/reviews/{reference}")
def review(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: ReviewerPage
) -> Response:
    """What the reviewer decides on; the opening is audited as the API's review view is."""
    response = _review_page(request, session, settings, actor, reference)
    record(
        session,
        actor=actor.label,
        action="replacement.review_opened",
        subject_type="replacement_order",
        subject_id=reference,
    )
    session.commit()
    return response


@router.post("/console/reviews/{reference}/reveal")
async def reveal(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: ReviewerPage
) -> Response:
    """Show the full name and number, once, and audit that they were shown."""
    await read_form(request, settings)
    order = orders.get_order(session, actor=actor, reference=reference)
    record(
        session,
        actor=actor.label,
        action="personal_data.revealed",
        subject_type="replacement_order",
        subject_id=order.reference,
        data={"fields": ["real_name", "msisdn"]},
    )
    session.commit()
    return _review_page(request, session, settings, actor, reference, revealed=True)


@router.post("/console/reviews/{reference}/decision")
async def decide(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: ReviewerPage
) -> Response:
    """Approve or reject, with a reason the applicant is told."""
    form, _ = await read_form(request, settings)
    form.require(language_of(request), "reason")
    approve = form.get("decision") == "approve"
    if form.ok:
        try:
            orders.decide(
                session, actor=actor, reference=reference, approve=approve, reason=form.get("reason")
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            note_refusal(request, form, exc, field="reason" if exc.code == "REASON_REQUIRED" else "_form")
        else:
            session.commit()
            outcome = "approved" if approve else "rejected"
            return RedirectResponse(f"/console/reviews?done={reference}&outcome={outcome}", status_code=303)
    return _review_page(request, session, settings, actor, reference, form=form, status_code=422)


@router.get("/console/evidence/{reference}")
def evidence_image(
    reference: str, session: DbSession, settings: AppSettings, actor: ReviewerPage
) -> Response:
    """An evidence image for the review page; every opening is audited, and nothing keeps a copy."""
    row, plain = evidence_service.view(session, settings, actor=actor, reference=reference)
    session.commit()
    return Response(
        plain,
        media_type=row.content_type,
        headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
    )
