"""The ASGI application: assembly of routers, error mapping and the database session per request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager

import structlog
from anyio import CapacityLimiter, Semaphore, to_thread
from fastapi import FastAPI, Request
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simkeep import __version__
from simkeep.body_limit import BodyLimitMiddleware
from simkeep.camara.fastpath import CamaraFastPath
from simkeep.config import Settings, get_settings
from simkeep.db.engine import make_engine, make_session_factory, read_only_sqlite_engine
from simkeep.errors import PROBLEM_RESPONSES, install_error_handlers
from simkeep.logging import configure_logging
from simkeep.request_id import new_request_id

SessionScope = Callable[[], AbstractContextManager[Session]]
#: Where photos (and the console's stock files) are posted: these bodies may reach the upload limit.
UPLOAD_PATHS = ("/api/v1/evidence", "/portal/apply/", "/console/stock/import")


def _warn_about_missing_tools(settings: Settings) -> None:
    """Say at start-up what will not run automatically on this machine (document OCR needs tesseract)."""
    from simkeep.identity.ocr import startup_check

    warning = startup_check(settings)
    if warning is not None:
        structlog.get_logger("simkeep.startup").warning("ocr.unavailable", detail=warning)


class RequestIdMiddleware:
    """Binds the request id (the caller's ``x-request-id`` or a new one) to the logs and returns it.

    Plain ASGI rather than ``@app.middleware``: no task and stream per request (the CAMARA hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        rid = given.decode("latin-1")[:64] or new_request_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_served_app() -> ASGIApp:
    """The app as ``simkeep serve`` runs it: :func:`create_app` behind the CAMARA hot path as the outermost
    layer, so a check never passes through the framework's own layers (``create_app`` puts the same layer
    inside them instead, where the tests' client reaches it)."""
    app = create_app(fast_path=False)
    return CamaraFastPath(app, max_bytes=app.state.settings.max_request_bytes, state=app.state)


#: Connections of a worker's pool kept from its requests' sessions, for the worker's other users of the pool:
#: the CAMARA query recorder, client reads, OAuth token exchanges, CAMARA answers read from the database.
#: Each of those takes a connection only within one trip to a thread, so it never waits for a thread
#: while holding one.
POOL_RESERVED_FOR_OTHERS = 4


def request_session_slots(settings: Settings) -> int:
    """How many requests of one worker may hold a session at once: SIMKEEP_REQUEST_SESSIONS where set, and
    never more than the pool's connections (its size plus twice that on overflow:
    :func:`~simkeep.db.engine.make_engine`) less :data:`POOL_RESERVED_FOR_OTHERS`, at least one. The pool
    has at least three, so a connection is always left for a request that has a thread
    (:func:`simkeep.auth.deps.get_session`)."""
    most = max(1, settings.db_pool_size * 3 - POOL_RESERVED_FOR_OTHERS)
    return most if settings.request_sessions is None else min(settings.request_sessions, most)


def _set_up_concurrency(app: FastAPI, settings: Settings) -> None:
    """The threads of this process's event loop: those that run requests' synchronous work (their
    database work: docs/configuration.md, SIMKEEP_REQUEST_THREADS), and apart from them those that end
    sessions still in a transaction; and the bound on requests holding a session at once
    (:func:`simkeep.auth.deps.get_session`)."""
    to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
    app.state.session_endings = CapacityLimiter(64)
    app.state.request_sessions = Semaphore(request_session_slots(settings))


def create_app(
    settings: Settings | None = None, *, session_scope: SessionScope | None = None, fast_path: bool = True
) -> FastAPI:
    """Build the app. Tests hand in ``session_scope``; otherwise the lifespan builds the engine.
    ``fast_path=False`` leaves out the CAMARA hot path layer (:func:`create_served_app` wraps it around)."""
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if session_scope is not None:
            app.state.session_scope = session_scope
            yield
            return
        engine = make_engine(
            settings.database_url,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            pool_size=settings.db_pool_size,
        )
        factory = make_session_factory(engine)
        _warn_about_missing_tools(settings)
        _set_up_concurrency(app, settings)

        @contextmanager
        def scope() -> Iterator[Session]:
            session = factory()
            try:
                yield session
            finally:
                session.close()

        app.state.session_scope = scope
        app.state.session_factory = factory  # the request's session (auth.deps.get_session)
        app.state.owns_database = True  # the CAMARA hot path opens read connections of its own
        reader = None
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            # Reads that must not queue for the write lock (a request's token): WAL lets them run beside it.
            reader = read_only_sqlite_engine(
                settings.database_url,
                timeout_seconds=settings.sqlite_busy_timeout_ms / 1000,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size * 2,
            )

            @contextmanager
            def read_scope() -> Iterator[Session]:
                with Session(reader) as session:
                    yield session

            app.state.read_scope = read_scope
        try:
            yield
        finally:
            engine.dispose()
            if reader is not None:
                reader.dispose()

    app = FastAPI(
        title="simkeep",
        version=__version__,
        summary="Number-keeping SIM lines: loss reports, replacement SIMs and SIM-swap protection.",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,  # also replaces FastAPI's default 422 (the app answers problem details)
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        upload_paths=UPLOAD_PATHS,
        upload_max_bytes=settings.upload_max_bytes,
    )

    app.add_middleware(RequestIdMiddleware)
    if fast_path:  # outermost of simkeep's layers: the CAMARA query operations are answered first
        app.add_middleware(CamaraFastPath, max_bytes=settings.max_request_bytes)

    @app.get("/healthz", tags=["health"])
    def healthz(request: Request) -> dict[str, str]:
        """Liveness: the process answers. ``camaraFacts`` says how this worker answers SIM Swap checks:
        from its copy of the lines' facts (``ready``), from the database while the copy is ``loading`` or
        ``stale``, or always from the database (``off``)."""
        runtime = getattr(request.app.state, "camara_runtime", None)
        facts = runtime.facts if runtime is not None else None
        return {
            "status": "ok",
            "version": __version__,
            "camaraFacts": facts.state if facts is not None else "off",
        }

    from simkeep.api import include_routers
    from simkeep.web.routes import include_pages

    include_routers(app)
    include_pages(app)
    return app
