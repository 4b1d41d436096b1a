"""Signing in and out over the JSON API."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from simkeep.auth import service
from simkeep.auth.deps import AppSettings, Credentials, DbSession
from simkeep.identifiers import normalise_msisdn
from simkeep.routing import OneTripRoute

router = APIRouter(route_class=OneTripRoute, prefix="/auth", tags=["auth"])


class StaffSignIn(BaseModel):
    """A staff user's credentials."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class LineSignIn(BaseModel):
    """A holder's number and service password."""

    msisdn: str = Field(min_length=1, max_length=32, examples=["+8613800138000"])
    service_password: str = Field(min_length=1, max_length=64)


class TokenRead(BaseModel):
    """A bearer token, shown once."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime


@router.post("/staff/token", response_model=TokenRead)
def staff_token(body: StaffSignIn, session: DbSession, settings: AppSettings) -> TokenRead:
    """Sign in as a staff user."""
    issued = service.sign_in_staff(session, settings, username=body.username, password=body.password)
    session.commit()
    return TokenRead(access_token=issued.access_token, expires_at=issued.expires_at)


@router.post("/line/token", response_model=TokenRead)
def line_token(body: LineSignIn, session: DbSession, settings: AppSettings) -> TokenRead:
    """Sign in as the holder of a number, with its service password."""
    issued = service.sign_in_line(
        session, settings, msisdn=normalise_msisdn(body.msisdn), service_password=body.service_password
    )
    session.commit()
    return TokenRead(access_token=issued.access_token, expires_at=issued.expires_at)


@router.post("/sign-out", status_code=204)
def sign_out(session: DbSession, settings: AppSettings, credentials: Credentials) -> None:
    """Revoke the presented token."""
    if credentials is not None:
        service.sign_out(session, settings, credentials.credentials)
        session.commit()
