"""What every console page module shares: rendering with the menu, field errors from domain refusals."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.web import i18n
from simkeep.web.console.menu import menu_for
from simkeep.web.forms import Form, field_for, message_for
from simkeep.web.templating import language_of, render

i18n.add(
    {
        "ccode.PROOF_FAILED": (
            "证件号码与登记的机主不符。",
            "The document number is not the registered holder's.",
        ),
        "ccode.SIM_NOT_AVAILABLE": (
            "该 SIM 卡不在本营业厅库存中（或类型不符、已被使用）。",
            "That SIM is not an unused SIM in this store's stock.",
        ),
        "ccode.INVALID_ICCID": ("ICCID 格式不正确（19 或 20 位数字，校验位有误）。", "Not a valid ICCID."),
        "ccode.INVALID_MSISDN": (
            "号码格式不正确，请含国家代码，例如 +8613800138000。",
            "Not a valid number; include the country code, e.g. +8613800138000.",
        ),
        "ccode.LINE_NOT_FOUND": ("没有这个号码。", "No such line."),
        "ccode.LINE_RECYCLED": ("该号码已被回收。", "This number was recycled."),
        "ccode.REPLACEMENT_ALREADY_OPEN": (
            "该号码已有进行中的补卡申请。",
            "This line already has an open replacement order.",
        ),
        "ccode.SIM_CHANGE_LOCKED": (
            "机主开启了换卡锁，需机主本人先关闭。",
            "The holder's SIM-change lock is on; the holder must turn it off first.",
        ),
        "ccode.REASON_REQUIRED": ("请填写原因。", "Give a reason."),
        "ccode.TRANSITION_NOT_ALLOWED": (
            "申请当前的状态不允许这一步。",
            "The order's state does not allow this step.",
        ),
        "ccode.ORDER_NOT_FOUND": ("没有这个申请。", "No such order."),
        "ccode.ROLE_NOT_ALLOWED": ("您的角色不能使用此页面。", "Your role does not allow this page."),
        "ccode.EVIDENCE_PURGED": (
            "该照片已在保存期满后删除，只保留核验结论。",
            "This photo was deleted after its retention period; the verdicts remain.",
        ),
        "ccode.NO_SIM_IN_STOCK": ("没有足够的库存。", "Not enough SIMs in stock."),
    }
)


def page(
    request: Request,
    settings: Settings,
    actor: Actor,
    template: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a console page with the staff user's menu."""
    return render(
        request,
        settings,
        template,
        status_code=status_code,
        area="console",
        area_title="app.console",
        staff=actor,
        console_menu=menu_for(actor),
        **context,
    )


def note_refusal(request: Request, form: Form, error: DomainError, *, field: str | None = None) -> None:
    """Put a domain refusal next to its field (``field`` when the page knows better than the error)."""
    form.errors[field or field_for(error)] = message_for(language_of(request), error, prefix="ccode.")


def t(request: Request, key: str, **params: object) -> str:
    """A text in the request's language."""
    return i18n.translate(language_of(request), key, **params)


def mask_name(name: str) -> str:
    """``张伟`` -> ``张*``, ``Li Na`` -> ``L****``: enough to tell orders apart, not to identify."""
    name = name.strip()
    return (name[:1] + "*" * max(1, len(name) - 1)) if name else "—"
