"""The operator's ES2+ endpoint the SM-DP+ calls: handleDownloadProgressInfo (SGP.22 v2.5 section 5.3.5).

Mounted at the root, at ``/gsma/rsp2/es2plus/handleDownloadProgressInfo``. The caller must present the bearer
token of ``SIMKEEP_ESIM_CALLBACK_TOKEN`` (compared in constant time; with no token configured every call is
refused); mutual TLS, where used, is terminated in front of simkeep (docs/esim.md). Answers are ES2+: HTTP
200 with ``header.functionExecutionStatus``; 401 for an unknown caller, with nothing recorded.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from simkeep.auth.deps import AppSettings, DbSession
from simkeep.errors import InvalidInput
from simkeep.esim import protocol
from simkeep.esim.progress import record_progress
from simkeep.routing import OneTripRoute
from simkeep.security import constant_time_equal

#: The SM-DP+ is answered in ES2+ JSON (SGP.22: a header with the execution status), not problem details.
ES2_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": "Refused (unknown caller, malformed call): an ES2+ header with status Failed.",
        "content": {"application/json": {"schema": {"type": "object", "required": ["header"]}}},
    },
}
router = APIRouter(route_class=OneTripRoute, tags=["esim"], responses=ES2_RESPONSES)


def _es2(body: dict[str, object], status_code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, media_type=protocol.CONTENT_TYPE)


def _authenticated(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    # An unset token still costs a comparison, so that a configured and an unset one cost the same time.
    ok = constant_time_equal(value.strip(), token or "\x00unset")
    return bool(token) and scheme.lower() == "bearer" and ok


@router.post(f"{protocol.BASE_PATH}/{protocol.HANDLE_DOWNLOAD_PROGRESS_INFO}", include_in_schema=True)
async def handle_download_progress_info(
    request: Request, session: DbSession, settings: AppSettings
) -> JSONResponse:
    """Record a download progress event from the SM-DP+ and move the profile (and the order) on."""
    if not _authenticated(request, settings.esim_callback_token):
        return _es2(
            protocol.failed(
                protocol.SUBJECT_FUNCTION_REQUESTER, protocol.REASON_UNKNOWN_CALLER, "unknown caller"
            ),
            401,
        )
    try:
        body = await request.json()
    except ValueError:
        body = None
    try:
        outcome = record_progress(session, settings, body)
    except InvalidInput as exc:
        session.rollback()
        reason = str(exc.details.get("reason", protocol.REASON_INVALID))
        return _es2(protocol.failed(protocol.SUBJECT_FUNCTION, reason, exc.message))
    session.commit()
    if outcome.result == "unknown_iccid":
        return _es2(protocol.failed(protocol.SUBJECT_ICCID, protocol.REASON_UNKNOWN, "unknown ICCID"))
    return _es2(protocol.response())
