"""Signing in and out: bearer tokens for staff users and for holders of one line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import AuthenticationFailed
from simkeep.identity.assurance import Assurance, Method
from simkeep.identity.service import Evidence, ProofContext, assess
from simkeep.lines import repository as lines_repo
from simkeep.models import AuthToken, Line, StaffUser, TokenKind
from simkeep.security import keyed_hash, new_token, verify_password


@dataclass(frozen=True)
class IssuedToken:
    """A token as shown once to its owner."""

    access_token: str
    expires_at: datetime


def _token_hash(settings: Settings, token: str) -> str:
    return keyed_hash(settings.secret_key, token, purpose="bearer-token")


def _issue(
    session: Session,
    settings: Settings,
    *,
    kind: TokenKind,
    ttl_minutes: int,
    assurance: Assurance,
    methods: tuple[str, ...],
    staff_user_id: int | None = None,
    line_id: int | None = None,
) -> IssuedToken:
    token = new_token()
    expires = utcnow() + timedelta(minutes=ttl_minutes)
    session.add(
        AuthToken(
            token_hash=_token_hash(settings, token),
            kind=kind,
            staff_user_id=staff_user_id,
            line_id=line_id,
            assurance=assurance.label,
            proof_methods=",".join(methods),
            expires_at=expires,
        )
    )
    session.flush()
    return IssuedToken(token, expires)


def sign_in_staff(session: Session, settings: Settings, *, username: str, password: str) -> IssuedToken:
    """A token for a staff user whose password matches; the same error and time for an unknown user."""
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        raise AuthenticationFailed("Unknown user name or wrong password.", code="INVALID_CREDENTIALS")
    record(
        session,
        actor=f"staff:{user.username}",
        action="staff.signed_in",
        subject_type="staff",
        subject_id=user.id,
    )
    return _issue(
        session,
        settings,
        kind=TokenKind.STAFF,
        ttl_minutes=settings.staff_token_ttl_minutes,
        assurance=Assurance.NONE,
        methods=(),
        staff_user_id=user.id,
    )


def sign_in_line(session: Session, settings: Settings, *, msisdn: str, service_password: str) -> IssuedToken:
    """A token for the holder of ``msisdn``, proven by the service password.

    An unknown or recycled number fails exactly like a wrong password, so sign-in does not reveal which
    numbers exist.
    """
    line = lines_repo.find_by_msisdn(session, msisdn)
    subscriber = lines_repo.holder_of(session, line) if line else None
    ctx = ProofContext(
        session=session,
        settings=settings,
        line=line,
        subscriber=subscriber,
        actor=Actor(kind="anonymous", label="anonymous"),
        action="line.sign_in",
    )
    assessment = assess(ctx, Evidence(service_password=service_password))
    if line is None or lines_repo.is_recycled(line):
        raise AuthenticationFailed("The number and password do not match.", code="INVALID_CREDENTIALS")
    record(
        session,
        actor=f"line:{line.id}",
        action="line.signed_in",
        subject_type="line",
        subject_id=line.id,
        data={"methods": list(assessment.methods)},
    )
    return _issue(
        session,
        settings,
        kind=TokenKind.LINE,
        ttl_minutes=settings.line_token_ttl_minutes,
        assurance=assessment.assurance,
        methods=assessment.methods,
        line_id=line.id,
    )


def start_portal_sign_in(
    session: Session, settings: Settings, *, msisdn: str, service_password: str, channel: str
) -> int:
    """The portal's first step: the number and service password; a one-time code goes to the registered
    contact chosen (never the number itself). Returns the line's id for the second step.

    Fails like :func:`sign_in_line` for an unknown number or a wrong password.
    """
    from simkeep.identity.otp import send_code

    line = lines_repo.find_by_msisdn(session, msisdn)
    subscriber = lines_repo.holder_of(session, line) if line else None
    ctx = ProofContext(
        session=session,
        settings=settings,
        line=line,
        subscriber=subscriber,
        actor=Actor(kind="anonymous", label="anonymous"),
        action="line.sign_in",
    )
    assess(ctx, Evidence(service_password=service_password))
    if line is None or subscriber is None or lines_repo.is_recycled(line):
        raise AuthenticationFailed("The number and password do not match.", code="INVALID_CREDENTIALS")
    send_code(session, settings, line=line, subscriber=subscriber, purpose="portal.sign_in", channel=channel)
    return line.id


def complete_portal_sign_in(session: Session, settings: Settings, *, line_id: int, code: str) -> IssuedToken:
    """The portal's second step: the code sent in the first. The session counts the service password only
    (medium assurance): the code opens the portal, and risky actions still ask for a code of their own."""
    line = session.get(Line, line_id)
    subscriber = lines_repo.holder_of(session, line) if line else None
    ctx = ProofContext(
        session=session,
        settings=settings,
        line=line,
        subscriber=subscriber,
        actor=Actor(kind="anonymous", label="anonymous"),
        action="portal.sign_in",
    )
    assess(ctx, Evidence(one_time_code=code))
    if line is None or lines_repo.is_recycled(line):
        raise AuthenticationFailed("The code is wrong or has expired.", code="INVALID_CREDENTIALS")
    record(
        session,
        actor=f"line:{line.id}",
        action="line.signed_in",
        subject_type="line",
        subject_id=line.id,
        data={"methods": ["service_password", "one_time_code"], "via": "portal"},
    )
    return _issue(
        session,
        settings,
        kind=TokenKind.LINE,
        ttl_minutes=settings.line_token_ttl_minutes,
        assurance=Assurance.MEDIUM,
        methods=(str(Method.SERVICE_PASSWORD),),
        line_id=line.id,
    )


#: The token and its staff user in one statement (every signed-in request asks it first): the columns an
#: actor needs as a plain row, not two objects for the session to track (nor the user's password hash).
_RESOLVE = (
    select(
        AuthToken.kind,
        AuthToken.line_id,
        AuthToken.assurance,
        AuthToken.proof_methods,
        AuthToken.expires_at,
        AuthToken.revoked_at,
        StaffUser.id.label("staff_user_id"),
        StaffUser.username,
        StaffUser.role,
        StaffUser.store_id,
        StaffUser.active,
    )
    .outerjoin(StaffUser, StaffUser.id == AuthToken.staff_user_id)
    .where(AuthToken.token_hash == bindparam("token_hash"))
)


def resolve(session: Session, settings: Settings, token: str) -> Actor:
    """The actor a bearer token speaks for; raises when it is unknown, expired or revoked."""
    row = session.execute(_RESOLVE, {"token_hash": _token_hash(settings, token)}).first()
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        raise AuthenticationFailed("The access token is invalid or has expired.", code="INVALID_TOKEN")
    if row.kind == TokenKind.STAFF:
        if row.staff_user_id is None or not row.active:
            raise AuthenticationFailed("The access token is invalid or has expired.", code="INVALID_TOKEN")
        return Actor(
            kind="staff",
            label=f"staff:{row.username}",
            staff_user_id=row.staff_user_id,
            role=row.role,
            store_id=row.store_id,
        )
    methods = tuple(m for m in row.proof_methods.split(",") if m)
    return Actor(
        kind="line",
        label=f"line:{row.line_id}",
        line_id=row.line_id,
        assurance=Assurance.from_label(row.assurance),
        proof_methods=methods,
    )


def sign_out(session: Session, settings: Settings, token: str) -> None:
    """Revoke a token (idempotent)."""
    row = session.scalar(select(AuthToken).where(AuthToken.token_hash == _token_hash(settings, token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
