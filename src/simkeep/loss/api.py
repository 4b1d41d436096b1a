"""JSON API for loss."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["loss"])
