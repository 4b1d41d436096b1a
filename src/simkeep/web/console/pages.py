"""Every console page beyond sign-in and the overview, gathered into one router."""

from __future__ import annotations

from fastapi import APIRouter

from simkeep.web.console import counter, dashboard, lines, reviews, stock

router = APIRouter()
for _module in (counter, reviews, lines, stock, dashboard):
    router.include_router(_module.router)
