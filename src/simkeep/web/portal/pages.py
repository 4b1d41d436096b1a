"""Every portal page beyond sign-in and home, gathered into one router."""

from __future__ import annotations

from fastapi import APIRouter

from simkeep.web.portal import apply, help, loss, orders, protect, reset

router = APIRouter()
for _module in (loss, apply, orders, protect, help, reset):
    router.include_router(_module.router)
