"""The CAMARA routes: ``POST /oauth2/token`` and the operations, answering errors the CAMARA way.

These routes do their own error mapping (:mod:`simkeep.camara.errors`), so they read the body and headers
themselves instead of letting FastAPI validate them into problem details.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from simkeep.camara import number_recycling, sim_swap
from simkeep.camara.auth import AccessToken, bearer_token, issue_token, require_scope
from simkeep.camara.clients import authenticate_client
from simkeep.camara.common import CORRELATOR, correlator, json_object, optional_phone_number, subject
from simkeep.camara.errors import (
    CAMARA_RESPONSES,
    OAUTH_RESPONSES,
    CamaraError,
    OAuthError,
    camara_response,
    camara_status,
    oauth_response,
)
from simkeep.camara.reader import reader_for
from simkeep.camara.repository import SwapFacts
from simkeep.camara.runtime import CamaraRuntime, ClientState
from simkeep.config import Settings


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    owns_database = getattr(app.state, "owns_database", False)
    # Tests hand in a session scope (one session shared with the test): reads go through it, and no
    # background heartbeat writes through it from another thread (one worker: the whole rate is its own).
    runtime = CamaraRuntime(app.state.settings, app.state.session_scope, heartbeat=owns_database)
    if owns_database:
        runtime.reader = reader_for(app.state.settings)
    app.state.camara_runtime = runtime
    runtime.recorder.start()
    try:
        yield
    finally:
        await run_in_threadpool(runtime.recorder.stop)
        if runtime.reader is not None:
            await runtime.reader.aclose()


router = APIRouter(tags=["camara"], lifespan=_lifespan, responses=CAMARA_RESPONSES)


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


@dataclass(frozen=True)
class Operation:
    """One CAMARA operation: its name in api_queries, the scopes that allow it, and its two steps."""

    api: str
    scopes: tuple[str, ...]
    #: Checks the body against the spec (400, then 422) and names the subject: (msisdn, parameters).
    prepare: Callable[[AccessToken, dict[str, Any]], tuple[str, Any]]
    #: Answers from the database (404 when the number is unknown).
    answer: Callable[[Session, str, Any], dict[str, Any]]
    #: Answers from the SIM Swap facts read by the worker's :class:`SwapReader` (the hot path), if it has one.
    fast: Callable[[SwapFacts | None, Any], dict[str, Any]] | None = None


def echoed_correlator(request: Request) -> str | None:
    """The request's x-correlator when it is valid (echoed on every answer, errors included)."""
    raw = request.headers.get("x-correlator")
    return raw if raw is not None and CORRELATOR.fullmatch(raw) else None


async def authorize(
    request: Request,
    runtime: CamaraRuntime,
    scopes: tuple[str, ...],
    on_client: Callable[[ClientState], None],
) -> AccessToken:
    """Check the bearer token, its client (active, not rotated), the scopes, the rate and quota and the
    x-correlator, in that order; ``on_client`` is told the client as soon as it is known (for the record)."""
    token = runtime.verify(bearer_token(request.headers.get("authorization")))
    if runtime.needs_load(token):
        state = await run_in_threadpool(runtime.load_client, token)
    else:
        state = runtime.cached_client(token)
    on_client(state)
    require_scope(token, scopes)
    runtime.admit(state)
    correlator(request.headers.get("x-correlator"))
    return token


async def run_operation(request: Request, operation: Operation) -> Response:
    """Authenticate, authorise, limit, validate, answer, record; every refusal as CAMARA asks."""
    runtime = runtime_of(request.app)
    echo = echoed_correlator(request)
    clients: list[ClientState] = []
    msisdn: str | None = None
    try:
        token = await authorize(request, runtime, operation.scopes, clients.append)
        data = json_object(await request.body())
        msisdn, params = operation.prepare(token, data)

        reader = runtime.reader
        if operation.fast is not None and reader is not None:
            facts = reader.swap_facts(msisdn) if reader.inline else await reader.aswap_facts(msisdn)
            result = operation.fast(facts, params)
        else:

            def answer() -> dict[str, Any]:
                assert msisdn is not None
                with runtime.session() as session:
                    return operation.answer(session, msisdn, params)

            result = await run_in_threadpool(answer)
    except CamaraError as error:
        if clients:
            runtime.record(
                clients[0],
                api=operation.api,
                msisdn=msisdn,
                answer=error.code,
                status=camara_status(error.code),
            )
        return camara_response(error, correlator=echo)
    runtime.record(clients[0], api=operation.api, msisdn=msisdn, answer=json.dumps(result), status=200)
    return JSONResponse(result, headers={"x-correlator": echo} if echo else None)


def _recycling_prepare(token: AccessToken, data: dict[str, Any]) -> tuple[str, Any]:
    body_number = optional_phone_number(data)
    day = number_recycling.specified_date(data)
    return subject(from_token=token.phone_number, from_body=body_number), day


def _recycling_answer(session: Session, msisdn: str, day: Any) -> dict[str, Any]:
    recycled = number_recycling.check_number_recycling(session, msisdn=msisdn, day=day)
    return {"phoneNumberRecycled": recycled}


NUMBER_RECYCLING_CHECK = Operation(
    number_recycling.API, number_recycling.SCOPES, _recycling_prepare, _recycling_answer
)


@router.post("/number-recycling/v0.2/check", summary="CAMARA Number Recycling: check")
async def number_recycling_check(request: Request) -> Response:
    """Whether the subscriber of a phone number changed after ``specifiedDate``."""
    return await run_operation(request, NUMBER_RECYCLING_CHECK)


def _swap_check_prepare(settings: Settings) -> Callable[[AccessToken, dict[str, Any]], tuple[str, Any]]:
    def prepare(token: AccessToken, data: dict[str, Any]) -> tuple[str, Any]:
        body_number = optional_phone_number(data)
        hours = sim_swap.max_age(data, monitored_days=settings.camara_sim_swap_monitored_days)
        return subject(from_token=token.phone_number, from_body=body_number), hours

    return prepare


def _swap_check_answer(session: Session, msisdn: str, hours: Any) -> dict[str, Any]:
    return {"swapped": sim_swap.check_swapped(session, msisdn=msisdn, hours=hours)}


def _swap_check_fast(facts: SwapFacts | None, hours: Any) -> dict[str, Any]:
    return {"swapped": sim_swap.swapped_from(facts, hours=hours)}


def _swap_retrieve_prepare(token: AccessToken, data: dict[str, Any]) -> tuple[str, Any]:
    return subject(from_token=token.phone_number, from_body=optional_phone_number(data)), None


@router.post("/sim-swap/v2/check", summary="CAMARA SIM Swap: check")
async def sim_swap_check(request: Request) -> Response:
    """Whether the number moved to a new SIM within the last ``maxAge`` hours (default 240)."""
    operation = Operation(
        sim_swap.API_CHECK,
        sim_swap.CHECK_SCOPES,
        _swap_check_prepare(_settings(request)),
        _swap_check_answer,
        _swap_check_fast,
    )
    return await run_operation(request, operation)


@router.post("/sim-swap/v2/retrieve-date", summary="CAMARA SIM Swap: retrieve-date")
async def sim_swap_retrieve_date(request: Request) -> Response:
    """When the number last moved to a SIM (or its activation); null beyond the monitored period."""
    monitored = _settings(request).camara_sim_swap_monitored_days

    def answer(session: Session, msisdn: str, _: Any) -> dict[str, Any]:
        return sim_swap.retrieve_date(session, msisdn=msisdn, monitored_days=monitored)

    def fast(facts: SwapFacts | None, _: Any) -> dict[str, Any]:
        return sim_swap.retrieve_from(facts, monitored_days=monitored)

    operation = Operation(
        sim_swap.API_RETRIEVE, sim_swap.RETRIEVE_SCOPES, _swap_retrieve_prepare, answer, fast
    )
    return await run_operation(request, operation)


# The three operations again as plain Starlette routes, matched before the FastAPI routes above: FastAPI's
# per-route machinery (dependency solving, its wrappers) costs about a third of the CPU time of a check, and
# these endpoints take the raw request anyway. The FastAPI routes stay for the OpenAPI document.
for _path, _endpoint in (
    ("/sim-swap/v2/check", sim_swap_check),
    ("/sim-swap/v2/retrieve-date", sim_swap_retrieve_date),
    ("/number-recycling/v0.2/check", number_recycling_check),
):
    router.routes.insert(0, Route(_path, _endpoint, methods=["POST"]))

# The subscription routes (sim-swap-subscriptions 0.3) live in their own module and share this router.
from simkeep.camara.subscriptions_api import router as _subscriptions_router  # noqa: E402

router.include_router(_subscriptions_router)
