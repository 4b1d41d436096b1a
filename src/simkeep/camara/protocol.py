"""The CAMARA hot path at the HTTP layer: ``simkeep serve``'s HTTP protocol.

Measured on a 2-core machine, uvicorn's ASGI request cycle (a task per request, the receive/send
coroutines, a write for the head and another for the body) costs more than the SIM Swap check itself; a
bare ASGI handler tops out near 35,000 requests/s there. :class:`CamaraHttpProtocol` is uvicorn's own
httptools protocol with one addition: a ``POST`` to exactly one of the CAMARA query paths, on a connection
with no other request in progress, is answered by the protocol itself. The body is collected as the parser
delivers it, :func:`simkeep.camara.operations.respond_now` answers without waiting when it can (SQLite
reads inline; the client is cached), otherwise a task awaits :func:`~simkeep.camara.operations.respond`
(PostgreSQL's batched reads, a client to load), and the whole answer leaves in one write. The checks,
their order, the errors and the recording are the same functions the ASGI routes use; everything else
(other paths, query strings, upgrades, a request pipelined behind one in progress) goes through uvicorn
unchanged, and keep-alive, pipelining order, ``Expect: 100-continue``, the body limit (413) and shutdown
behave as uvicorn's do.

The runtime is the one the app's lifespan registered in this process (:func:`serve_runtime`); until then,
and in any process that registered none, every request takes uvicorn's path.
"""

from __future__ import annotations

import logging
from asyncio import TimerHandle

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from simkeep.body_limit import too_large_problem
from simkeep.camara.operations import Operation, Reply, failure_reply, respond, respond_now
from simkeep.camara.runtime import CamaraRuntime
from simkeep.request_id import new_request_id

_served: list[CamaraRuntime] = []


def serve_runtime(runtime: CamaraRuntime | None) -> None:
    """Register (or, with None, withdraw) the runtime this process's HTTP protocol answers with."""
    _served.clear()
    if runtime is not None:
        _served.append(runtime)


def served_runtime() -> CamaraRuntime | None:
    """The registered runtime, if any."""
    return _served[0] if _served else None


class _Done:
    """uvicorn's connection code calls ``message_event.set()`` on the cycle it holds."""

    def set(self) -> None:
        """Nothing waits on a hot-path request."""


_DONE = _Done()


class _FastRequest:
    """One hot-path request; it stands in ``protocol.cycle`` for uvicorn while it is answered (so that a
    request pipelined behind it is queued, and shutdown and disconnection are noted on it)."""

    def __init__(self, operation: Operation, runtime: CamaraRuntime, *, keep_alive: bool) -> None:
        self.operation = operation
        self.runtime = runtime
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.response_complete = False
        self.disconnected = False
        self.message_event = _DONE


class CamaraHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol answering the CAMARA query operations itself (see the module).

    Keep-alive: uvicorn arms a timer after every response and cancels it when the next request's bytes
    arrive (about 2 microseconds a request, a few per cent of a check). Here one timer per idle period
    does: a response notes when the connection became idle and arms the timer only if none is armed; when
    it fires, it closes the connection if it has been idle for the whole timeout, re-arms for the rest if
    a request came and went meanwhile, and stands down while a request is in progress (its response arms
    it again). An idle connection closes after the same timeout as with uvicorn.
    """

    _fast: _FastRequest | None = None
    #: loop time since when the connection is idle (None: a request is arriving or in progress).
    _idle_since: float | None = None
    _keepalive: TimerHandle | None = None

    def _unset_keepalive_if_required(self) -> None:
        """Bytes arrived or the connection closes: not idle (an armed timer stays; see the class)."""
        self._idle_since = None
        super()._unset_keepalive_if_required()

    def on_response_complete(self) -> None:
        """As uvicorn's, but the keep-alive timer armed once per idle period (see the class)."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self._keepalive is None:
            self._keepalive = self.loop.call_later(self.timeout_keep_alive, self._keepalive_due)

    def _keepalive_due(self) -> None:
        self._keepalive = None
        if self._idle_since is None or self.transport.is_closing():
            return  # busy (the response re-arms) or gone
        remaining = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if remaining > 0:
            self._keepalive = self.loop.call_later(remaining, self._keepalive_due)
            return
        self.timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        fast = self._take(served_runtime())
        self._fast = fast
        if fast is None:
            super().on_headers_complete()
            return
        self._unset_keepalive_if_required()  # a request is under way (pipelined in the same read, too)
        self.cycle = fast  # type: ignore[assignment]
        limit = fast.runtime.settings.max_request_bytes
        declared = b"0"
        for name, value in self.headers:
            if name == b"content-length":
                declared = value
                break
        if not declared.isdigit() or int(declared) > limit:
            self._refuse_too_large(fast, limit)
        elif self.expect_100_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _take(self, runtime: CamaraRuntime | None) -> _FastRequest | None:
        """A hot-path request for this one, or None (uvicorn's path)."""
        if runtime is None or self.parser.get_method() != b"POST" or self.parser.should_upgrade():
            return None
        if not (self.cycle is None or self.cycle.response_complete) or self.pipeline:
            return None  # behind a request in progress: queued by uvicorn, in order
        operation = runtime.operations.get(self.url.decode("latin-1"))
        if operation is None:
            return None
        http_10 = self.parser.get_http_version() == "1.0"
        return _FastRequest(operation, runtime, keep_alive=not http_10 and self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        fast = self._fast
        if fast is None:
            super().on_body(body)
            return
        if fast.response_complete:
            return
        fast.body += body
        limit = fast.runtime.settings.max_request_bytes
        if len(fast.body) > limit:
            self._refuse_too_large(fast, limit)

    def on_message_complete(self) -> None:
        fast = self._fast
        if fast is None:
            super().on_message_complete()
            return
        self._fast = None
        if fast.response_complete:
            return
        authorization, correlator, request_id = _headers(self.headers)
        body = bytes(fast.body)
        try:
            reply = respond_now(
                fast.runtime,
                fast.operation,
                authorization=authorization,
                correlator_header=correlator,
                body=body,
            )
        except Exception:
            reply = failure_reply(fast.operation)
        if reply is not None:
            self._finish(fast, reply, request_id)
            return
        task = self.loop.create_task(self._answer_later(fast, authorization, correlator, request_id, body))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer_later(
        self,
        fast: _FastRequest,
        authorization: str | None,
        correlator: str | None,
        request_id: bytes | None,
        body: bytes,
    ) -> None:
        try:
            reply = await respond(
                fast.runtime,
                fast.operation,
                authorization=authorization,
                correlator_header=correlator,
                body=body,
            )
        except Exception:
            reply = failure_reply(fast.operation)
        self._finish(fast, reply, request_id)

    def _finish(self, fast: _FastRequest, reply: Reply, request_id: bytes | None) -> None:
        """Write the whole answer at once, then carry on as uvicorn does after a response."""
        fast.response_complete = True
        if fast.disconnected or self.transport.is_closing():
            return
        rid = request_id or new_request_id().encode()
        head = [STATUS_LINE[reply.status], _default_head(self.server_state.default_headers)]
        for name, value in reply.headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-length: ", str(len(reply.body)).encode(), b"\r\nx-request-id: ", rid, b"\r\n"]
        if not fast.keep_alive:
            head.append(b"connection: close\r\n")
        head += [b"\r\n", reply.body]
        self.transport.write(b"".join(head))
        if self.access_log and self.access_logger.isEnabledFor(logging.INFO):  # uvicorn's arguments, in order
            client = f"{self.client[0]}:{self.client[1]}" if self.client else ""
            version = self.parser.get_http_version() if self.parser is not None else "1.1"
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d', client, "POST", self.url.decode("latin-1"), version, reply.status
            )
        if not fast.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _refuse_too_large(self, fast: _FastRequest, limit: int) -> None:
        """Answer 413 (a problem document, as the app's body limit does) and close the connection: the rest
        of the body is not read."""
        fast.keep_alive = False
        body = too_large_problem(limit, self.url.decode("latin-1"))
        reply = Reply(413, [(b"content-type", b"application/problem+json")], body)
        self._finish(fast, reply, None)


_default: tuple[object, bytes] = (None, b"")


def _default_head(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default headers (server, date) as bytes, joined once per list: uvicorn makes a new list
    when the date changes, about once a second."""
    global _default  # noqa: PLW0603 - a per-process cache of the last list seen
    source, joined = _default
    if source is not default_headers:
        joined = b"".join(name + b": " + value + b"\r\n" for name, value in default_headers)
        _default = (default_headers, joined)
    return joined


def _headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None, bytes | None]:
    """(Authorization, x-correlator, x-request-id) of a request's headers (names already lower case)."""
    authorization = correlator = None
    request_id: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-correlator":
            correlator = value.decode("latin-1")
        elif name == b"x-request-id":
            request_id = value[:64]
    return authorization, correlator, request_id
