"""Refusing request bodies over a size limit before they are read whole."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised inside receive() when the body passes the limit."""


class BodyLimitMiddleware:
    """Answer 413 with a problem document when a body is larger than ``max_bytes``.

    A declared Content-Length over the limit is refused before anything is read; a chunked body is
    counted as it arrives and refused when it passes the limit.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, *, upload_paths: tuple[str, ...] = (), upload_max_bytes: int = 0
    ) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.upload_paths = upload_paths
        self.upload_max_bytes = max(max_bytes, upload_max_bytes)

    def limit_for(self, path: str) -> int:
        """Photo uploads may be as large as the upload limit (plus the form around them); the rest less."""
        if any(path.startswith(p) for p in self.upload_paths):
            return self.upload_max_bytes + 64 * 1024
        return self.default_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(str(scope.get("path", "")))
        await self._limited(scope, receive, send, max_bytes)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = max_bytes + 1
                if declared > max_bytes:
                    await self._refuse(scope, send, max_bytes)
                    return
        seen = 0
        started = False
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            # The framework turns the failed read into its own error response (the endpoint never ran);
            # that response is replaced by the 413.
            nonlocal started
            if exceeded:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(scope, send, max_bytes)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send, max_bytes)

    async def _refuse(self, scope: Scope, send: Send, max_bytes: int) -> None:
        await refuse_too_large(scope, send, max_bytes)


def too_large_problem(max_bytes: int, path: str) -> bytes:
    """The 413 problem document naming the limit."""
    return json.dumps(
        {
            "type": "https://simkeep.dev/problems/request-too-large",
            "title": "Request too large",
            "status": 413,
            "code": "REQUEST_TOO_LARGE",
            "detail": f"The request body is larger than {max_bytes} bytes.",
            "instance": path,
        }
    ).encode()


async def refuse_too_large(scope: Scope, send: Send, max_bytes: int) -> None:
    """Answer 413 with a problem document naming the limit."""
    body = too_large_problem(max_bytes, scope.get("path", ""))
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
