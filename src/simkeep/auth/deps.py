"""FastAPI dependencies: the request's session, settings and actor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated

from anyio import CancelScope, to_thread
from fastapi import Depends, Request
from fastapi.concurrency import contextmanager_in_threadpool, run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from simkeep.auth import service
from simkeep.auth.actors import ANONYMOUS, Actor
from simkeep.config import Settings
from simkeep.errors import AuthenticationFailed, DomainError, NotAllowed
from simkeep.models import StaffRole

_bearer = HTTPBearer(
    auto_error=False, description="A token from /api/v1/auth/staff/token or /auth/line/token."
)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session. The endpoint commits once; errors roll back (except recorded failed proofs).

    An async dependency, so the request makes no trips to the thread pool for it when none is needed: a
    sync one enters and leaves in a trip each, and under load every trip costs the server CPU (each wakes
    a thread and hands the interpreter lock over). Making the session touches no database (it connects at
    its first statement), and closing one that has committed only lets its objects go. A scope handed to
    :func:`~simkeep.app.create_app` (the tests') may use its connection as it opens and closes, so it runs
    on a thread throughout.

    A session still in a transaction at the end (a request that only read, or failed, or a page that showed
    an error) is ended without waiting for a request thread: those are few (SIMKEEP_REQUEST_THREADS), and
    all of them may be taken by requests blocked on a lock this transaction holds (SQLite's write lock, a
    line row locked ``FOR UPDATE``), which would then never be released. On SQLite its rollback (local, it
    never waits) runs right here; on PostgreSQL it runs on a thread apart from the request threads
    (``app.state.session_endings``). A failed JSON API request has ended its transaction on its own thread
    already (:mod:`simkeep.routing`).

    A request waits on the event loop for its session (``app.state.request_sessions``,
    :func:`simkeep.app.request_session_slots`): a signed-in request takes its pooled connection in its first
    trip to a thread (the token's lookup) and keeps it until its last (the endpoint), waiting for a thread
    in between. Unbounded, a burst of more requests than connections held every connection while waiting
    for a thread, with every thread taken by requests waiting for a connection, until the pool's timeout.
    Bounded below the pool's size, a request that has a thread always finds a connection; a burst queues
    on the event loop, where waiting costs nothing and holds nothing. The request's body is in before it
    waits (:func:`_received`), so a client slow to send one holds no session meanwhile.
    """
    await _received(request)
    factory = getattr(request.app.state, "session_factory", None)
    if factory is None:
        scope = contextmanager_in_threadpool(request.app.state.session_scope())
        async with scope as session, _keeping_changes(session):
            yield session
        return
    async with request.app.state.request_sessions:
        session = factory()
        try:
            async with _keeping_changes(session, request):
                yield session
        finally:
            if not session.in_transaction() or _is_sqlite(session):
                session.close()
            else:
                with CancelScope(shield=True):  # a request cancelled mid-way still gives its connection back
                    await _apart(request, session.close)


async def _received(request: Request) -> None:
    """Receive the request's body now if nothing has read it yet: a page that reads its form itself would
    otherwise wait for a slow client's upload holding a session (and its connection, once the caller's
    token is looked up). The body is kept for the page's own read (Starlette parses the form from it), and
    its size is bounded before it arrives (:class:`~simkeep.body_limit.BodyLimitMiddleware`). A route whose
    body the framework has read already (JSON, form fields) costs nothing more."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    try:
        await request.body()
    except RuntimeError:  # "Stream consumed": the framework parsed the form from the stream itself
        return


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


async def _apart(request: Request, end: Callable[[], None]) -> None:
    """Run ``end`` (a session's close or commit) on a thread apart from the request threads (see
    :func:`get_session`)."""
    await to_thread.run_sync(end, limiter=request.app.state.session_endings)


@asynccontextmanager
async def _keeping_changes(session: Session, request: Request | None = None) -> AsyncIterator[None]:
    """Commit what an error that keeps its changes (a recorded failed proof) wrote, then raise it on (a JSON
    API request has committed it already, on its own thread: :mod:`simkeep.routing`)."""
    try:
        yield
    except DomainError as exc:
        if exc.keep_changes and session.in_transaction():
            if _is_sqlite(session):
                session.commit()  # the write lock is held: no waiting for a thread (see get_session)
            else:
                with CancelScope(shield=True):  # a failed proof counts even if the request is cancelled
                    if request is None:
                        await run_in_threadpool(session.commit)
                    else:
                        await _apart(request, session.commit)
        raise


async def get_app_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


DbSession = Annotated[Session, Depends(get_session)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def current_actor(
    request: Request, session: DbSession, settings: AppSettings, credentials: Credentials
) -> Actor:
    """The caller: anonymous without a token, else the token's staff user or line holder."""
    if credentials is None:
        return ANONYMOUS
    return resolve_token(request, session, settings, credentials.credentials)


def resolve_token(request: Request, session: Session, settings: Settings, token: str) -> Actor:
    """:func:`service.resolve`; on SQLite outside the transaction the endpoint will write in.

    A sync dependency runs in one trip to the thread pool and the endpoint in another, with the event loop
    in between. On SQLite every simkeep transaction holds the write lock (``BEGIN IMMEDIATE``), so a
    transaction begun by the token's lookup held the lock across that gap: under load, requests held it
    while they waited for a thread. The lookup only reads, so on SQLite it reads on a read-only connection
    (``app.state.read_scope``), which in WAL mode neither takes nor waits for the lock. On PostgreSQL reads
    lock nothing and the lookup stays in the request's transaction.
    """
    read_scope = getattr(request.app.state, "read_scope", None)
    if read_scope is None:
        return service.resolve(session, settings, token)
    with read_scope() as reader:
        return service.resolve(reader, settings, token)


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require_staff(*roles: StaffRole) -> Callable[[Actor], Coroutine[None, None, Actor]]:
    """A dependency that admits staff users with one of ``roles`` (admins always)."""

    async def dependency(actor: CurrentActor) -> Actor:
        if not actor.is_staff:
            raise AuthenticationFailed("Sign in as a staff user.", code="STAFF_SIGN_IN_REQUIRED")
        if roles and not actor.has_role(*roles):
            raise NotAllowed("Your role does not allow this.", code="ROLE_NOT_ALLOWED")
        return actor

    return dependency


async def require_line(actor: CurrentActor) -> Actor:
    """Admits a holder signed in to a line."""
    if actor.kind != "line":
        raise AuthenticationFailed(
            "Sign in with your number and service password.", code="LINE_SIGN_IN_REQUIRED"
        )
    return actor


async def require_signed_in(actor: CurrentActor) -> Actor:
    """Admits any signed-in caller, staff or holder."""
    if actor.kind not in ("staff", "line"):
        raise AuthenticationFailed("Sign in first.", code="SIGN_IN_REQUIRED")
    return actor


StaffActor = Annotated[Actor, Depends(require_staff())]
LineActor = Annotated[Actor, Depends(require_line)]
SignedInActor = Annotated[Actor, Depends(require_signed_in)]
