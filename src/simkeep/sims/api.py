"""JSON API for sims."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["sims"])
