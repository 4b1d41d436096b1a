"""The CAMARA query operations (SIM Swap check and retrieve-date, Number Recycling check), free of any web
framework: from the raw ``Authorization`` and ``x-correlator`` headers and the body to the status, headers
and body of the answer.

The hot path (:mod:`simkeep.camara.fastpath`) calls :func:`respond` straight from the ASGI server, and the
FastAPI routes of :mod:`simkeep.camara.api` (which document the operations in the OpenAPI file) call the
same function, so there is one implementation of the checks, their order and the errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import structlog
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from simkeep.camara import number_recycling, sim_swap
from simkeep.camara.auth import AccessToken, bearer_token, require_scope
from simkeep.camara.common import CORRELATOR, correlator, json_object, optional_phone_number, subject
from simkeep.camara.errors import CamaraError, camara_status
from simkeep.camara.repository import SwapFacts

if TYPE_CHECKING:
    from simkeep.camara.facts import FactsCache
    from simkeep.camara.runtime import CamaraRuntime, ClientState
    from simkeep.config import Settings

SIM_SWAP_CHECK = "/sim-swap/v2/check"
SIM_SWAP_RETRIEVE = "/sim-swap/v2/retrieve-date"
NUMBER_RECYCLING_CHECK = "/number-recycling/v0.2/check"

_JSON = (b"content-type", b"application/json")


log = structlog.get_logger("simkeep.camara")
_INTERNAL = CamaraError("INTERNAL", "The server could not answer; try again.")
_SWAPPED = '{"swapped":true}'
_NOT_SWAPPED = '{"swapped":false}'


def _dumps(content: dict[str, Any]) -> str:
    """JSON as Starlette's JSONResponse writes it (compact, UTF-8)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True)
class Operation:
    """One CAMARA operation: its name in the query log, the scopes that allow it, and its steps."""

    api: str
    scopes: tuple[str, ...]
    #: Checks the body against the spec (400, then 422) and names the subject: (msisdn, parameters).
    prepare: Callable[[AccessToken, dict[str, Any]], tuple[str, Any]]
    #: Answers from the database (404 when the number is unknown).
    answer: Callable[[Session, str, Any], dict[str, Any]]
    #: The JSON answer from the SIM Swap facts read by the worker's :class:`SwapReader` (the hot path).
    fast: Callable[[SwapFacts | None, Any], str] | None = None
    #: The JSON answer from the last move to a SIM in microseconds (None: unknown or recycled), as the
    #: worker's copy of the facts gives it without datetimes (:meth:`FactsCache.latest_us`); same answers
    #: as :attr:`fast`.
    fast_us: Callable[[int | None, Any], str] | None = None


@dataclass(frozen=True)
class Reply:
    """An answer ready to send: status, headers (without content-length) and the JSON body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def operations_for(settings: Settings) -> dict[str, Operation]:
    """The operations by path, for one configuration (built once per worker)."""
    monitored = settings.camara_sim_swap_monitored_days

    def check_prepare(token: AccessToken, data: dict[str, Any]) -> tuple[str, Any]:
        body_number = optional_phone_number(data)
        hours = sim_swap.max_age(data, monitored_days=monitored)
        return subject(from_token=token.phone_number, from_body=body_number), hours

    def check_answer(session: Session, msisdn: str, hours: Any) -> dict[str, Any]:
        return {"swapped": sim_swap.check_swapped(session, msisdn=msisdn, hours=hours)}

    def check_fast(facts: SwapFacts | None, hours: Any) -> str:
        return _SWAPPED if sim_swap.swapped_from(facts, hours=hours) else _NOT_SWAPPED

    def check_fast_us(latest_us: int | None, hours: Any) -> str:
        return _SWAPPED if sim_swap.swapped_from_us(latest_us, hours=hours) else _NOT_SWAPPED

    def retrieve_prepare(token: AccessToken, data: dict[str, Any]) -> tuple[str, Any]:
        return subject(from_token=token.phone_number, from_body=optional_phone_number(data)), None

    def retrieve_answer(session: Session, msisdn: str, _: Any) -> dict[str, Any]:
        return sim_swap.retrieve_date(session, msisdn=msisdn, monitored_days=monitored)

    def retrieve_fast(facts: SwapFacts | None, _: Any) -> str:
        return _dumps(sim_swap.retrieve_from(facts, monitored_days=monitored))

    def recycling_prepare(token: AccessToken, data: dict[str, Any]) -> tuple[str, Any]:
        body_number = optional_phone_number(data)
        day = number_recycling.specified_date(data)
        return subject(from_token=token.phone_number, from_body=body_number), day

    def recycling_answer(session: Session, msisdn: str, day: Any) -> dict[str, Any]:
        recycled = number_recycling.check_number_recycling(session, msisdn=msisdn, day=day)
        return {"phoneNumberRecycled": recycled}

    return {
        SIM_SWAP_CHECK: Operation(
            sim_swap.API_CHECK, sim_swap.CHECK_SCOPES, check_prepare, check_answer, check_fast, check_fast_us
        ),
        SIM_SWAP_RETRIEVE: Operation(
            sim_swap.API_RETRIEVE, sim_swap.RETRIEVE_SCOPES, retrieve_prepare, retrieve_answer, retrieve_fast
        ),
        NUMBER_RECYCLING_CHECK: Operation(
            number_recycling.API, number_recycling.SCOPES, recycling_prepare, recycling_answer
        ),
    }


def echoed(raw: str | None) -> str | None:
    """The request's x-correlator when it is valid (echoed on every answer, errors included)."""
    return raw if raw is not None and CORRELATOR.fullmatch(raw) else None


async def authorize(
    runtime: CamaraRuntime,
    scopes: tuple[str, ...],
    *,
    authorization: str | None,
    correlator_header: str | None,
    on_client: Callable[[ClientState], None],
) -> AccessToken:
    """Check the bearer token, its client (active, not rotated), the scopes, the rate and quota and the
    x-correlator, in that order; ``on_client`` is told the client as soon as it is known (for the record)."""
    token = runtime.verify(bearer_token(authorization))
    if not runtime.needs_load(token):
        state = runtime.cached_client(token)
    elif runtime.has_copy(token) and runtime.settings.camara_client_cache_seconds > 0:
        # A copy due for a refresh answers this check while the refresh runs: a request never waits for
        # it (on SQLite the read queues behind writers and once took seconds under load).
        runtime.refresh_in_background(token)
        state = runtime.cached_client(token)
    else:
        state = await run_in_threadpool(runtime.load_client, token)
    on_client(state)
    _admit(runtime, scopes, state, token, correlator_header)
    return token


def _admit(
    runtime: CamaraRuntime,
    scopes: tuple[str, ...],
    state: ClientState,
    token: AccessToken,
    correlator_header: str | None,
) -> None:
    """The checks after the client is known: scopes, then rate and quota, then the x-correlator."""
    require_scope(token, scopes)
    runtime.admit(state)
    correlator(correlator_header)


def failure_reply(operation: Operation) -> Reply:
    """500 INTERNAL for an unexpected failure behind the checks (logged with its traceback; the bank sees
    no detail). Call from an ``except`` block."""
    log.exception("camara.operation_failed", api=operation.api)
    return error_reply(_INTERNAL, echo=None)


def error_reply(error: CamaraError, *, echo: str | None) -> Reply:
    """``{status, code, message}`` with the x-correlator echoed (when it was valid)."""
    status = camara_status(error.code)
    headers = [_JSON]
    if echo:
        headers.append((b"x-correlator", echo.encode()))
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
    key = (status, error.code, error.message)
    body = _ERROR_BODIES.get(key)
    if body is None:  # the messages are a few fixed texts: each body is made once (404 is a tenth of checks)
        body = _dumps({"status": status, "code": error.code, "message": error.message}).encode("utf-8")
        if len(_ERROR_BODIES) < _ERROR_BODIES_MAX:
            _ERROR_BODIES[key] = body
    return Reply(status, headers, body)


_ERROR_BODIES: dict[tuple[int, str, str], bytes] = {}
_ERROR_BODIES_MAX = 256


async def respond(
    runtime: CamaraRuntime,
    operation: Operation,
    *,
    authorization: str | None,
    correlator_header: str | None,
    body: bytes,
) -> Reply:
    """Authenticate, authorise, limit, validate, answer, record; every refusal as CAMARA asks."""
    echo = echoed(correlator_header)
    clients: list[ClientState] = []
    msisdn: str | None = None
    try:
        token = await authorize(
            runtime,
            operation.scopes,
            authorization=authorization,
            correlator_header=correlator_header,
            on_client=clients.append,
        )
        msisdn, params = operation.prepare(token, json_object(body))
        reader = runtime.reader
        facts = runtime.facts
        lookup = runtime.inline_lookup()
        if lookup is None and facts is not None and await facts.wait_fresh(STALE_WAIT):
            lookup = runtime.inline_lookup()  # the copy, fresh again after a late poll
        if operation.fast_us is not None and facts is not None and facts.ready:
            text = operation.fast_us(facts.latest_us(msisdn), params)
        elif operation.fast is not None and lookup is not None:
            text = operation.fast(lookup(msisdn), params)
        elif operation.fast is not None and reader is not None:
            text = operation.fast(await reader.aswap_facts(msisdn), params)
        else:
            subject_number = msisdn

            def answer() -> dict[str, Any]:
                with runtime.session() as session:
                    return operation.answer(session, subject_number, params)

            text = _dumps(await run_in_threadpool(answer))
    except CamaraError as error:
        return _refused(runtime, operation, clients[0] if clients else None, msisdn, error, echo=echo)
    return _answered(runtime, operation, clients[0], msisdn, text, echo=echo)


#: How long a check waits for a late poll of the worker's copy of the facts before it reads the database.
STALE_WAIT = 0.5


def respond_now(
    runtime: CamaraRuntime,
    operation: Operation,
    *,
    authorization: str | None,
    correlator_header: str | None,
    body: bytes,
) -> Reply | None:
    """:func:`respond` without waiting, when nothing needs to wait: the worker can read the facts at once
    (its fresh copy of the facts, or SQLite) and knows the token's client already. None otherwise, having
    changed nothing (the caller then awaits :func:`respond`). A refusal of the token itself is answered
    here too."""
    facts = runtime.facts
    packed = operation.fast_us is not None and facts is not None and facts.ready
    lookup = None if packed else runtime.inline_lookup()
    if operation.fast is None or (lookup is None and not packed):
        return None
    echo = echoed(correlator_header)
    state: ClientState | None = None
    msisdn: str | None = None
    try:
        token = runtime.verify(bearer_token(authorization))
        if not runtime.is_cached(token):
            return None
        state = runtime.cached_client(token)
        _admit(runtime, operation.scopes, state, token, correlator_header)
        msisdn, params = operation.prepare(token, json_object(body))
        if lookup is None:  # packed: the worker's fresh copy of the facts, read without datetimes
            # (the cast's type as a string: a subscripted Callable is built anew at every call)
            text = cast("Callable[[int | None, Any], str]", operation.fast_us)(
                cast("FactsCache", facts).latest_us(msisdn), params
            )
        else:
            text = operation.fast(lookup(msisdn), params)
    except CamaraError as error:
        return _refused(runtime, operation, state, msisdn, error, echo=echo)
    return _answered(runtime, operation, state, msisdn, text, echo=echo)


def _refused(
    runtime: CamaraRuntime,
    operation: Operation,
    state: ClientState | None,
    msisdn: str | None,
    error: CamaraError,
    *,
    echo: str | None,
) -> Reply:
    """Record a refusal (when the client is known) and answer it."""
    if state is not None:
        status = camara_status(error.code)
        runtime.record(state, api=operation.api, msisdn=msisdn, answer=error.code, status=status)
    return error_reply(error, echo=echo)


def _answered(
    runtime: CamaraRuntime,
    operation: Operation,
    state: ClientState,
    msisdn: str | None,
    text: str,
    *,
    echo: str | None,
) -> Reply:
    """Record an answer and send it."""
    runtime.record(state, api=operation.api, msisdn=msisdn, answer=text, status=200)
    headers = [_JSON]
    if echo:
        headers.append((b"x-correlator", echo.encode()))
    return Reply(200, headers, text.encode("utf-8"))
