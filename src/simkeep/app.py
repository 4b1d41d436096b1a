"""The ASGI application: assembly of routers, error mapping and the database session per request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager

import structlog
from fastapi import FastAPI, Request, Response
from sqlalchemy.orm import Session

from simkeep import __version__
from simkeep.body_limit import BodyLimitMiddleware
from simkeep.config import Settings, get_settings
from simkeep.db.engine import make_engine, make_session_factory
from simkeep.errors import install_error_handlers
from simkeep.logging import configure_logging

SessionScope = Callable[[], AbstractContextManager[Session]]
#: Where photos (and the console's stock files) are posted: these bodies may reach the upload limit.
UPLOAD_PATHS = ("/api/v1/evidence", "/portal/apply/", "/console/stock/import")


def _warn_about_missing_tools(settings: Settings) -> None:
    """Say at start-up what will not run automatically on this machine (document OCR needs tesseract)."""
    from simkeep.identity.ocr import startup_check

    warning = startup_check(settings)
    if warning is not None:
        structlog.get_logger("simkeep.startup").warning("ocr.unavailable", detail=warning)


def create_app(settings: Settings | None = None, *, session_scope: SessionScope | None = None) -> FastAPI:
    """Build the app. Tests hand in ``session_scope``; otherwise the lifespan builds the engine."""
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

        @contextmanager
        def scope() -> Iterator[Session]:
            session = factory()
            try:
                yield session
            finally:
                session.close()

        app.state.session_scope = scope
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="simkeep",
        version=__version__,
        summary="Number-keeping SIM lines: loss reports, replacement SIMs and SIM-swap protection.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        upload_paths=UPLOAD_PATHS,
        upload_max_bytes=settings.upload_max_bytes,
    )

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid[:64])
        response = await call_next(request)
        response.headers["x-request-id"] = rid[:64]
        return response

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    from simkeep.api import include_routers
    from simkeep.web.routes import include_pages

    include_routers(app)
    include_pages(app)
    return app
