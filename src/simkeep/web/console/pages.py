"""Every console page beyond sign-in and the overview, gathered into one router."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
