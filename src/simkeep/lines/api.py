"""JSON API for lines."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["lines"])
