"""The console's first page: what waits for this staff user."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from simkeep.auth.deps import AppSettings, DbSession
from simkeep.models import OrderState, ReplacementOrder
from simkeep.replacements.workflow import OPEN_STATES
from simkeep.web import i18n
from simkeep.web.console.menu import menu_for
from simkeep.web.deps import StaffPage
from simkeep.web.templating import render

router = APIRouter()

i18n.add(
    {
        "console.home.title": ("概览", "Overview"),
        "console.home.open": ("进行中的补卡申请", "Open replacement orders"),
        "console.home.none": ("没有进行中的申请。", "No open orders."),
    }
)


@router.get("/console")
def home(request: Request, session: DbSession, settings: AppSettings, actor: StaffPage) -> Response:
    """Open orders by state, and the menu of what this role may do."""
    rows = session.execute(
        select(ReplacementOrder.state, func.count())
        .where(ReplacementOrder.state.in_(list(OPEN_STATES)))
        .group_by(ReplacementOrder.state)
    ).all()
    by_state = {str(state): int(n) for state, n in rows}
    return render(
        request,
        settings,
        "console/home.html",
        area="console",
        area_title="app.console",
        staff=actor,
        console_menu=menu_for(actor),
        open_orders=[(str(s), by_state[str(s)]) for s in OrderState if str(s) in by_state],
    )
