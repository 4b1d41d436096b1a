"""Every portal page beyond sign-in and home, gathered into one router."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
