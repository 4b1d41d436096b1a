"""CAMARA and OAuth2 errors, and the one place that maps them to responses for the CAMARA routes.

The routes under ``/number-recycling``, ``/sim-swap`` and ``/sim-swap-subscriptions`` answer errors as
CAMARA ``{status, code, message}`` with the ``x-correlator`` echoed; ``/oauth2/token`` answers RFC 6749
``{error, error_description}``. The rest of simkeep keeps its problem details (``simkeep.errors``).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from simkeep.errors import DomainError

#: The CAMARA codes these routes use, with their HTTP status and the spec's default message.
CAMARA_CODES: dict[str, tuple[int, str]] = {
    "INVALID_ARGUMENT": (400, "Client specified an invalid argument, request body or query param."),
    "OUT_OF_RANGE": (400, "Client specified an invalid range."),
    "INVALID_PROTOCOL": (400, "Only HTTP is supported."),
    "INVALID_CREDENTIAL": (400, "Only Access token and plain credentials are supported."),
    "INVALID_TOKEN": (400, "Only bearer token is supported."),
    "INVALID_SINK": (400, "sink not valid for the specified protocol."),
    "UNAUTHENTICATED": (
        401,
        "Request not authenticated due to missing, invalid, or expired credentials. "
        "A new authentication is required.",
    ),
    "PERMISSION_DENIED": (403, "Client does not have sufficient permissions to perform this action."),
    "IDENTIFIER_NOT_FOUND": (404, "Phone number not found."),
    "NOT_FOUND": (404, "The specified resource is not found."),
    "ALREADY_EXISTS": (409, "The resource that a client tried to create already exists."),
    "SERVICE_NOT_APPLICABLE": (422, "The service is not available for the provided phone number."),
    "MISSING_IDENTIFIER": (422, "The phone number cannot be identified."),
    "UNNECESSARY_IDENTIFIER": (422, "The phone number is already identified by the access token."),
    "QUOTA_EXCEEDED": (429, "Rejected due to exceeding a business quota limit."),
    "TOO_MANY_REQUESTS": (429, "Rejected due to request rate limit overpassed."),
    "INTERNAL": (500, "Unknown server error. Typically a server bug."),
}

#: RFC 6749 section 5.2 errors of the token endpoint, with their HTTP status.
OAUTH_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "invalid_client": 401,
    "invalid_grant": 400,
    "unauthorized_client": 400,
    "unsupported_grant_type": 400,
    "invalid_scope": 400,
}


class CamaraError(DomainError):
    """A refusal of a CAMARA call, with one of the codes in :data:`CAMARA_CODES`."""

    def __init__(self, code: str, message: str | None = None) -> None:
        if code not in CAMARA_CODES:
            msg = f"unknown CAMARA code {code}"
            raise ValueError(msg)
        super().__init__(message or CAMARA_CODES[code][1], code=code)


class OAuthError(DomainError):
    """A refusal of the token endpoint, with an RFC 6749 error code (lower case, as the RFC spells it)."""

    def __init__(self, error: str, description: str) -> None:
        if error not in OAUTH_STATUS:
            msg = f"unknown OAuth2 error {error}"
            raise ValueError(msg)
        super().__init__(description, code=error)


def camara_status(code: str) -> int:
    """The HTTP status of a CAMARA code."""
    return CAMARA_CODES[code][0]


#: The CAMARA error body and the OpenAPI responses of the CAMARA routes (not problem details).
ERROR_INFO_SCHEMA: dict[str, Any] = {
    "title": "ErrorInfo",
    "type": "object",
    "required": ["status", "code", "message"],
    "properties": {
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "message": {"type": "string"},
    },
}
CAMARA_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": "Refused: CAMARA `{status, code, message}`; `/oauth2/token` answers RFC 6749 errors.",
        "content": {"application/json": {"schema": ERROR_INFO_SCHEMA}},
    },
    "5XX": {
        "description": "Failed: CAMARA `{status, code, message}`.",
        "content": {"application/json": {"schema": ERROR_INFO_SCHEMA}},
    },
}


OAUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": "Refused: an RFC 6749 section 5.2 error.",
        "content": {
            "application/json": {
                "schema": {
                    "title": "OAuthError",
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
                }
            }
        },
    },
}


def camara_response(error: CamaraError, *, correlator: str | None) -> JSONResponse:
    """``{status, code, message}`` with the x-correlator echoed (when it was valid)."""
    status = camara_status(error.code)
    headers = {"x-correlator": correlator} if correlator else {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return JSONResponse(
        {"status": status, "code": error.code, "message": error.message}, status_code=status, headers=headers
    )


def oauth_response(error: OAuthError) -> JSONResponse:
    """An RFC 6749 error response; never cached."""
    status = OAUTH_STATUS[error.code]
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="simkeep", charset="UTF-8"'
    return JSONResponse(
        {"error": error.code, "error_description": error.message}, status_code=status, headers=headers
    )
