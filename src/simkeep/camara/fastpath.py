"""The CAMARA hot path: the query operations answered straight from the ASGI server.

Banks ask the SIM Swap check on every login and payment, so its cost per request decides how many checks a
worker answers. Routing a request through Starlette and FastAPI (middleware chain, request object,
routing, response object) costs several times what the check itself does. :class:`CamaraFastPath` is the
outermost ASGI layer of the app: a ``POST`` to one of the three operation paths is answered here with
:func:`simkeep.camara.operations.respond`, the very function the documented FastAPI routes call; every
other request goes on into the app unchanged. What the inner layers would add is done here too: the body
size limit (413 problem document, before a byte is read when Content-Length says so) and the
``x-request-id`` answer header.
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from simkeep.body_limit import refuse_too_large
from simkeep.camara.operations import Operation, Reply, failure_reply, respond
from simkeep.camara.runtime import CamaraRuntime
from simkeep.request_id import new_request_id


class CamaraFastPath:
    """ASGI middleware answering the CAMARA query operations itself (see the module's docs)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, state: Any = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        #: The app's state, when this layer wraps the app from outside (no ``scope["app"]`` there yet).
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            state = self.state if self.state is not None else scope["app"].state
            runtime: CamaraRuntime | None = getattr(state, "camara_runtime", None)
            if runtime is not None:
                operation = runtime.operations.get(scope["path"])
                if operation is not None:
                    await self._answer(runtime, operation, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(
        self, runtime: CamaraRuntime, operation: Operation, scope: Scope, receive: Receive, send: Send
    ) -> None:
        authorization = correlator = request_id = None
        declared = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-correlator":
                correlator = value.decode("latin-1")
            elif name == b"content-length":
                declared = int(value) if value.isdigit() else self.max_bytes + 1
            elif name == b"x-request-id":
                request_id = value[:64]
        rid = request_id or new_request_id().encode()
        if declared > self.max_bytes:
            await refuse_too_large(scope, send, self.max_bytes)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await refuse_too_large(scope, send, self.max_bytes)
                return
            more = message.get("more_body", False)
        try:
            reply = await respond(
                runtime, operation, authorization=authorization, correlator_header=correlator, body=body
            )
        except Exception:
            structlog.contextvars.bind_contextvars(request_id=rid.decode("latin-1"))
            reply = failure_reply(operation)
        await _send(send, reply, rid)


async def _send(send: Send, reply: Reply, request_id: bytes) -> None:
    headers: list[Any] = [
        *reply.headers,
        (b"content-length", str(len(reply.body)).encode()),
        (b"x-request-id", request_id),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
