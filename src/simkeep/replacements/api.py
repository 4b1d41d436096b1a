"""JSON API for replacements."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["replacements"])
