"""Domain errors and the one place that maps them to responses.

Domain code raises :class:`DomainError` subclasses that carry a stable code and a message, never an HTTP
status. :func:`http_status_for` is the single mapping from codes to HTTP statuses used by the JSON API
(RFC 9457 problem details), and later by the CAMARA routes and the portal pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.exc import DataError, OperationalError

if TYPE_CHECKING:  # the web layer's types: imported where a response is made, not by every CLI command
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

log = structlog.get_logger(__name__)


class DomainError(Exception):
    """A refusal the caller can act upon, with a stable SCREAMING_SNAKE code."""

    code: str = "DOMAIN_ERROR"
    #: When true the request's own changes (such as a recorded failed proof) are committed despite the error.
    keep_changes: bool = False

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFound(DomainError):
    """The thing asked about does not exist (or the caller may not know that it exists)."""

    code = "NOT_FOUND"


class InvalidInput(DomainError):
    """Input that fails a domain check (a bad ICCID, a bad phone number ...)."""

    code = "INVALID_INPUT"


class Conflict(DomainError):
    """The request conflicts with the current state (duplicate, already open ...)."""

    code = "CONFLICT"


class NotAllowed(DomainError):
    """The actor is known but may not do this."""

    code = "NOT_ALLOWED"


class AuthenticationFailed(DomainError):
    """No valid credentials were presented."""

    code = "UNAUTHENTICATED"


# Codes whose HTTP status is not that of their class. Everything else maps by class below.
_STATUS_BY_CODE: dict[str, int] = {
    "PROOF_FAILED": 403,
    "ASSURANCE_TOO_LOW": 403,
    "SELF_SERVICE_LOCKED": 423,
    "SIM_CHANGE_LOCKED": 423,
    "TRANSITION_NOT_ALLOWED": 409,
    "COOLDOWN_ACTIVE": 409,
    "NO_SIM_IN_STOCK": 409,
    "PASSWORD_LOCKED": 423,
    "OTP_RATE_LIMITED": 429,
    "VAULT_ERROR": 500,
    "NETWORK_FAILURE": 502,  # the HLR refused a step
    "NETWORK_NUMBER_HELD": 502,
    "NETWORK_UNAVAILABLE": 503,  # the HLR is unreachable: try again
    "NETWORK_OPERATION_WAITING": 503,
}

_STATUS_BY_CLASS: list[tuple[type[DomainError], int]] = [
    (NotFound, 404),
    (InvalidInput, 422),
    (Conflict, 409),
    (NotAllowed, 403),
    (AuthenticationFailed, 401),
]


def http_status_for(error: DomainError) -> int:
    """The HTTP status for a domain error: by its code first, then by its class; 400 otherwise."""
    if error.code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[error.code]
    for cls, status in _STATUS_BY_CLASS:
        if isinstance(error, cls):
            return status
    return 400


def problem(status: int, code: str, title: str, detail: str, instance: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem-details response with simkeep's stable ``code`` member."""
    body: dict[str, Any] = {
        "type": f"https://simkeep.dev/problems/{code.lower().replace('_', '-')}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "instance": instance,
    }
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    from fastapi.responses import JSONResponse

    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


#: The JSON schema of a problem details body (RFC 9457) as :func:`problem` writes it.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance", "code"],
    "properties": {
        "type": {"type": "string", "description": "about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "instance": {"type": "string", "description": "The request path."},
        "code": {"type": "string", "description": "A stable error code (docs/api.md)."},
        "details": {"type": "object", "description": "More about the error, when there is more."},
        "errors": {
            "type": "array",
            "description": "The fields that failed validation (422 VALIDATION_FAILED).",
            "items": {"type": "object"},
        },
    },
}

#: The error answers every JSON API operation may give, declared once for the OpenAPI document.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": "Refused: problem details with a stable `code` (422: the request failed validation).",
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
    },
    "5XX": {
        "description": "The server or a system it needs failed (problem details).",
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
    },
}


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping from domain and validation errors to problem details."""
    from fastapi.exceptions import RequestValidationError

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        from simkeep.web.routes import error_page, is_page

        if is_page(request):
            return error_page(request, exc)
        extra = {"details": exc.details} if exc.details else {}
        status = http_status_for(exc)
        return problem(
            status, exc.code, exc.code.replace("_", " ").capitalize(), exc.message, request.url.path, **extra
        )

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "loc": list(err.get("loc", [])),
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        return problem(
            422,
            "VALIDATION_FAILED",
            "Validation failed",
            "The request did not match the expected schema.",
            request.url.path,
            errors=errors,
        )

    async def on_data_error(request: Request, exc: Exception) -> Response:
        # The database refused a value no schema rule caught (a NUL character in a string, for PostgreSQL):
        # bad input, not a server fault. Nothing was written: the request's transaction is rolled back.
        error = InvalidInput("A value in the request cannot be stored (for example, a NUL character).")
        log.info("request.data_error", error=type(exc).__name__)
        return await on_domain_error(request, error)

    async def on_operational_error(request: Request, exc: Exception) -> Response:
        # SQLite's write lock stayed taken for the whole busy timeout (``SIMKEEP_SQLITE_BUSY_TIMEOUT_MS``):
        # nothing was written, and the same request may succeed in a moment. Any other operational failure
        # of the database is a server fault, raised as such.
        if "database is locked" not in str(getattr(exc, "orig", exc)):
            raise exc
        log.warning("request.database_busy", path=request.url.path)
        response = problem(
            503,
            "DATABASE_BUSY",
            "Database busy",
            "The database was busy with other writes for too long; nothing was changed. Try again.",
            request.url.path,
        )
        response.headers["Retry-After"] = "1"
        return response

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(DataError, on_data_error)
    app.add_exception_handler(OperationalError, on_operational_error)
