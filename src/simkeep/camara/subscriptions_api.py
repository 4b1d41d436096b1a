"""The routes of CAMARA SIM Swap Subscriptions 0.3 (``/sim-swap-subscriptions/v0.3/subscriptions``).

Same authentication, scopes, limits, error shape and query record as the other CAMARA routes
(:func:`simkeep.camara.api.authorize`); each call is one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from simkeep.camara import subscriptions
from simkeep.camara.api import authorize, echoed_correlator, runtime_of
from simkeep.camara.auth import AccessToken
from simkeep.camara.common import PHONE_NUMBER, json_object
from simkeep.camara.errors import CAMARA_RESPONSES, CamaraError, camara_response, camara_status
from simkeep.camara.runtime import ClientState
from simkeep.routing import OneTripRoute

PREFIX = "/sim-swap-subscriptions/v0.3/subscriptions"
router = APIRouter(route_class=OneTripRoute, tags=["camara"], responses=CAMARA_RESPONSES)

#: Does the work of one call in a transaction: (session, token, client pk, JSON body) -> (status, body).
Work = Callable[[Session, AccessToken, int, dict[str, Any] | None], tuple[int, Any]]


def _body_number(data: dict[str, Any] | None) -> str | None:
    """The phone number a create request names (for the query record), if it names a valid one."""
    config = (data or {}).get("config")
    detail = config.get("subscriptionDetail") if isinstance(config, dict) else None
    number = detail.get("phoneNumber") if isinstance(detail, dict) else None
    return number if isinstance(number, str) and PHONE_NUMBER.fullmatch(number) else None


async def _call(request: Request, *, api: str, scopes: tuple[str, ...], work: Work, body: bool) -> Response:
    runtime = runtime_of(request.app)
    echo = echoed_correlator(request)
    headers = {"x-correlator": echo} if echo else None
    clients: list[ClientState] = []
    subject: str | None = None
    try:
        token = await authorize(request, runtime, scopes, clients.append)
        subject = token.phone_number
        data = json_object(await request.body()) if body else None
        subject = subject or _body_number(data)

        def run() -> tuple[int, Any]:
            with runtime.session() as session:
                try:
                    outcome = work(session, token, clients[0].pk, data)
                except BaseException:
                    session.rollback()
                    raise
                session.commit()
                return outcome

        status, result = await run_in_threadpool(run)
    except CamaraError as error:
        if clients:
            runtime.record(
                clients[0], api=api, msisdn=subject, answer=error.code, status=camara_status(error.code)
            )
        return camara_response(error, correlator=echo)
    runtime.record(clients[0], api=api, msisdn=subject, answer=str(status), status=status)
    if status == 204:
        return Response(status_code=204, headers=headers)
    return JSONResponse(result, status_code=status, headers=headers)


@router.post(PREFIX, summary="CAMARA SIM Swap Subscriptions: create", status_code=201)
async def create_subscription(request: Request) -> Response:
    """Subscribe to the SIM swaps of a phone number; events are CloudEvents posted to ``sink``."""
    settings = runtime_of(request.app).settings

    def work(
        session: Session, token: AccessToken, client_pk: int, data: dict[str, Any] | None
    ) -> tuple[int, Any]:
        assert data is not None
        parsed = subscriptions.parse_request(settings, data)
        sub = subscriptions.create_subscription(
            session, settings, client_pk=client_pk, token_phone=token.phone_number, request=parsed
        )
        return 201, subscriptions.to_response(sub, with_phone_number=token.phone_number is None)

    return await _call(
        request, api=subscriptions.API_CREATE, scopes=subscriptions.CREATE_SCOPES, work=work, body=True
    )


@router.get(PREFIX, summary="CAMARA SIM Swap Subscriptions: list")
async def list_subscriptions(request: Request) -> Response:
    """The client's subscriptions (a three-legged token sees only its number's)."""

    def work(
        session: Session, token: AccessToken, client_pk: int, _: dict[str, Any] | None
    ) -> tuple[int, Any]:
        found = subscriptions.list_subscriptions(session, client_pk=client_pk, token_phone=token.phone_number)
        two_legged = token.phone_number is None
        return 200, [subscriptions.to_response(sub, with_phone_number=two_legged) for sub in found]

    return await _call(
        request, api=subscriptions.API_LIST, scopes=subscriptions.READ_SCOPES, work=work, body=False
    )


@router.get(PREFIX + "/{subscription_id}", summary="CAMARA SIM Swap Subscriptions: get")
async def get_subscription(request: Request, subscription_id: str) -> Response:
    """One subscription of the client."""

    def work(
        session: Session, token: AccessToken, client_pk: int, _: dict[str, Any] | None
    ) -> tuple[int, Any]:
        sub = subscriptions.get_subscription(
            session, client_pk=client_pk, public_id=subscription_id, token_phone=token.phone_number
        )
        return 200, subscriptions.to_response(sub, with_phone_number=token.phone_number is None)

    return await _call(
        request, api=subscriptions.API_GET, scopes=subscriptions.READ_SCOPES, work=work, body=False
    )


@router.delete(
    PREFIX + "/{subscription_id}", summary="CAMARA SIM Swap Subscriptions: delete", status_code=204
)
async def delete_subscription(request: Request, subscription_id: str) -> Response:
    """End a subscription; its sink gets a ``subscription-ended`` event (SUBSCRIPTION_DELETED)."""

    def work(
        session: Session, token: AccessToken, client_pk: int, _: dict[str, Any] | None
    ) -> tuple[int, Any]:
        subscriptions.delete_subscription(
            session, client_pk=client_pk, public_id=subscription_id, token_phone=token.phone_number
        )
        return 204, None

    return await _call(
        request, api=subscriptions.API_DELETE, scopes=subscriptions.DELETE_SCOPES, work=work, body=False
    )
