"""The CAMARA routes: ``POST /oauth2/token`` and the operations, answering errors the CAMARA way.

These routes do their own error mapping (:mod:`simkeep.camara.errors`), so they read the body and headers
themselves instead of letting FastAPI validate them into problem details.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from simkeep.camara import operations
from simkeep.camara.auth import AccessToken, issue_token
from simkeep.camara.clients import authenticate_client
from simkeep.camara.errors import (
    CAMARA_RESPONSES,
    OAUTH_RESPONSES,
    OAuthError,
    oauth_response,
)
from simkeep.camara.protocol import serve_runtime
from simkeep.camara.reader import client_read_scope, facts_cache_for, reader_for
from simkeep.camara.runtime import CamaraRuntime, ClientState
from simkeep.config import Settings
from simkeep.routing import OneTripRoute


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    owns_database = getattr(app.state, "owns_database", False)
    # Tests hand in a session scope (one session shared with the test): reads go through it, and no
    # background heartbeat writes through it from another thread (one worker: the whole rate is its own).
    client_reads = client_read_scope(app.state.settings) if owns_database else None
    runtime = CamaraRuntime(
        app.state.settings,
        app.state.session_scope,
        heartbeat=owns_database,
        read_scope=client_reads[0] if client_reads else None,
    )
    polls: asyncio.Task[None] | None = None
    if owns_database:
        runtime.reader = reader_for(app.state.settings)
        if app.state.settings.camara_facts_cache:
            runtime.facts = facts_cache_for(app.state.settings)
            runtime.facts.start()  # loads in its thread; until then checks read the database
            polls = asyncio.get_running_loop().create_task(runtime.facts.run_polls())
        serve_runtime(runtime)  # simkeep serve's HTTP protocol answers the hot path with it
    app.state.camara_runtime = runtime
    runtime.recorder.start()
    if owns_database:
        # What start-up built (modules, the app, the ORM's metadata) lives as long as the worker: keep it out
        # of the cyclic garbage collector's passes, where a full pass stalled every request for tens of ms.
        gc.collect()
        gc.freeze()
    try:
        yield
    finally:
        if owns_database:
            serve_runtime(None)
        await run_in_threadpool(runtime.recorder.stop)
        if polls is not None:
            polls.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polls
        if runtime.facts is not None:
            await run_in_threadpool(runtime.facts.stop)
            runtime.facts.engine.dispose()
        if runtime.reader is not None:
            await runtime.reader.aclose()
        if client_reads is not None:
            client_reads[1].dispose()


router = APIRouter(route_class=OneTripRoute, tags=["camara"], lifespan=_lifespan, responses=CAMARA_RESPONSES)


def runtime_of(app: Any) -> CamaraRuntime:
    """The CAMARA runtime of a running app."""
    runtime: CamaraRuntime = app.state.camara_runtime
    return runtime


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# --- OAuth2 client credentials (RFC 6749 section 4.4) ---------------------------------------------------

_TOKEN_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "Only HTTP Basic client authentication is supported in headers.")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_client", "Malformed HTTP Basic credentials.") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "Malformed HTTP Basic credentials.")
    return unquote(client_id), unquote(secret)


async def _token(request: Request) -> JSONResponse:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "The body must be application/x-www-form-urlencoded.")
    form = await request.form()
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str):
            raise OAuthError("invalid_request", "Files are not accepted here.")
        if key in fields:
            raise OAuthError("invalid_request", f"Parameter {key} is repeated.")
        fields[key] = value
    grant_type = fields.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required.")
    if grant_type != "client_credentials":
        raise OAuthError("unsupported_grant_type", "Only the client_credentials grant is supported.")
    basic = _basic_credentials(request.headers.get("authorization"))
    in_body = ("client_id" in fields) or ("client_secret" in fields)
    if basic is not None and in_body:
        raise OAuthError("invalid_request", "Use one client authentication method, not two.")
    if basic is None:
        if not fields.get("client_id") or not fields.get("client_secret"):
            raise OAuthError("invalid_client", "Client authentication failed.")
        basic = (fields["client_id"], fields["client_secret"])
    client_id, secret = basic
    settings = _settings(request)

    def authenticate() -> tuple[str, list[str]]:
        with request.app.state.session_scope() as session:
            client = authenticate_client(session, settings, client_id=client_id, secret=secret)
            return client.client_id, client.scopes.split()

    cid, allowed = await run_in_threadpool(authenticate)
    requested = fields.get("scope")
    if requested is None:
        granted = allowed
    else:
        granted = list(dict.fromkeys(requested.split()))
        if not granted or any(scope not in allowed for scope in granted):
            raise OAuthError("invalid_scope", "The requested scope is unknown or not granted to this client.")
    access_token, ttl = issue_token(settings, client_id=cid, scopes=granted)
    return JSONResponse(
        {"access_token": access_token, "token_type": "Bearer", "expires_in": ttl, "scope": " ".join(granted)},
        headers=_TOKEN_HEADERS,
    )


@router.post(
    "/oauth2/token",
    summary="OAuth2 client-credentials token for relying parties",
    responses=OAUTH_RESPONSES,
)
async def oauth2_token(request: Request) -> Response:
    """Exchange client credentials for a short-lived bearer token (RFC 6749 section 4.4)."""
    try:
        return await _token(request)
    except OAuthError as error:
        return oauth_response(error)


# --- CAMARA operations ---------------------------------------------------------------------------------
# Under load these paths are answered by simkeep.camara.fastpath before the request reaches FastAPI; the
# routes below document them in the OpenAPI file and answer through the same function when the app runs
# without that layer.


def echoed_correlator(request: Request) -> str | None:
    """The request's x-correlator when it is valid (echoed on every answer, errors included)."""
    return operations.echoed(request.headers.get("x-correlator"))


async def authorize(
    request: Request,
    runtime: CamaraRuntime,
    scopes: tuple[str, ...],
    on_client: Callable[[ClientState], None],
) -> AccessToken:
    """:func:`simkeep.camara.operations.authorize` with the request's headers."""
    return await operations.authorize(
        runtime,
        scopes,
        authorization=request.headers.get("authorization"),
        correlator_header=request.headers.get("x-correlator"),
        on_client=on_client,
    )


async def run_operation(request: Request, path: str) -> Response:
    """Answer one operation through :func:`simkeep.camara.operations.respond`."""
    runtime = runtime_of(request.app)
    operation = runtime.operations[path]
    reply = await operations.respond(
        runtime,
        operation,
        authorization=request.headers.get("authorization"),
        correlator_header=request.headers.get("x-correlator"),
        body=await request.body(),
    )
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reply.headers if k != b"content-type"}
    return Response(reply.body, status_code=reply.status, headers=headers, media_type="application/json")


@router.post(operations.NUMBER_RECYCLING_CHECK, summary="CAMARA Number Recycling: check")
async def number_recycling_check(request: Request) -> Response:
    """Whether the subscriber of a phone number changed after ``specifiedDate``."""
    return await run_operation(request, operations.NUMBER_RECYCLING_CHECK)


@router.post(operations.SIM_SWAP_CHECK, summary="CAMARA SIM Swap: check")
async def sim_swap_check(request: Request) -> Response:
    """Whether the number moved to a new SIM within the last ``maxAge`` hours (default 240)."""
    return await run_operation(request, operations.SIM_SWAP_CHECK)


@router.post(operations.SIM_SWAP_RETRIEVE, summary="CAMARA SIM Swap: retrieve-date")
async def sim_swap_retrieve_date(request: Request) -> Response:
    """When the number last moved to a SIM (or its activation); null beyond the monitored period."""
    return await run_operation(request, operations.SIM_SWAP_RETRIEVE)


# The subscription routes (sim-swap-subscriptions 0.3) live in their own module and share this router.
from simkeep.camara.subscriptions_api import router as _subscriptions_router  # noqa: E402

router.include_router(_subscriptions_router)
