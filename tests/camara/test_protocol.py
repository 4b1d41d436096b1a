"""``simkeep serve``'s HTTP protocol (simkeep.camara.protocol) answers the CAMARA hot path itself: over real
sockets, against the real command, it must speak HTTP/1.1 as uvicorn does (keep-alive, pipelining order,
bodies in pieces or chunked, ``Expect: 100-continue``, HTTP/1.0, the body limit) and answer what the ASGI
routes answer. On PostgreSQL the answers come from a task (batched reads), which the pipelining test covers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h11
import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from simkeep.camara import clients
from simkeep.config import Settings
from tests import factories
from tests.camara.conftest import logged as logged_queries
from tests.conftest import TEST_SECRET

CHECK = "/sim-swap/v2/check"
RETRIEVE = "/sim-swap/v2/retrieve-date"
LIMIT = 4096
UNKNOWN = "+8613999999999"
KEEPALIVE = 3


@dataclass
class Served:
    """A running ``simkeep serve`` and what the tests ask it about."""

    host: str
    port: int
    token: str
    msisdn: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop the server (its workers write their query log as they stop)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(
    fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session], tmp_path: Path
) -> Iterator[Served]:
    """``simkeep serve`` (one worker) on the test's private database, with a line and a bank's token."""
    _, settings = fresh
    with fresh_session_factory() as s:
        msisdn = factories.holder(s, settings).line.msisdn
        issued = clients.create_client(
            s, settings, name="Bank", scopes=["sim-swap:check", "sim-swap:retrieve-date"]
        )
        s.commit()
        client_id, secret = issued.client.client_id, issued.secret
    port = _free_port()
    env = {
        **os.environ,
        "SIMKEEP_ENVIRONMENT": "test",
        "SIMKEEP_SECRET_KEY": TEST_SECRET,
        "SIMKEEP_DATABASE_URL": settings.database_url,
        "SIMKEEP_LOG_LEVEL": "INFO",  # with uvicorn's access log, as the README's start command runs
        "SIMKEEP_MAX_REQUEST_BYTES": str(LIMIT),
        "SIMKEEP_HTTP_KEEPALIVE_SECONDS": str(KEEPALIVE),
    }
    log = tmp_path / "serve.log"
    simkeep = str(Path(sys.executable).parent / "simkeep")
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
            [simkeep, "serve", "--port", str(port), "--no-upgrade"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    token = None
    while token is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"simkeep serve did not start: {log.read_text(errors='replace')[-2000:]}")
        try:
            form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
            token = httpx.post(base + "/oauth2/token", data=form, timeout=5).json()["access_token"]
        except httpx.TransportError:
            time.sleep(0.1)
    server = Served("127.0.0.1", port, token, msisdn, process, log)
    try:
        yield server
    finally:
        server.stop()


def _request(
    path: str,
    body: bytes,
    *,
    token: str | None,
    extra: tuple[tuple[str, str], ...] = (),
    version: bytes = b"1.1",
    chunked: bool = False,
) -> bytes:
    """The bytes of one request (a JSON POST, or a GET when ``body`` is empty and the path asks no body)."""
    method = b"GET" if path == "/healthz" else b"POST"
    lines = [method + b" " + path.encode() + b" HTTP/" + version, b"host: test"]
    if token:
        lines.append(b"authorization: Bearer " + token.encode())
    if method == b"POST":
        lines.append(b"content-type: application/json")
        lines.append(b"transfer-encoding: chunked" if chunked else b"content-length: %d" % len(body))
    lines += [f"{k}: {v}".encode() for k, v in extra]
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if chunked:
        return head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return head + body


def _check_body(number: str) -> bytes:
    return json.dumps({"phoneNumber": number, "maxAge": 240}).encode()


class Conversation:
    """One client connection, its responses read with h11."""

    def __init__(self, server: Served) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.h11 = h11.Connection(our_role=h11.CLIENT)

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next whole response: (status, headers, body); an informational response comes back alone."""
        # h11 as a client must see a request go out before a response comes in: tell it one did.
        if self.h11.our_state is h11.IDLE:
            self.h11.send(
                h11.Request(method="POST", target="/", headers=[("host", "t"), ("content-length", "0")])
            )
            self.h11.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(self.sock.recv(65536))
                continue
            if isinstance(event, h11.InformationalResponse):
                return event.status_code, {k.decode(): v.decode() for k, v in event.headers}, b""
            if isinstance(event, h11.Response):
                status, headers = event.status_code, {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                return status, headers, body
            elif isinstance(event, h11.ConnectionClosed):
                pytest.fail("the connection closed before a response")

    def closed(self) -> bool:
        """Whether the server closed the connection (nothing more to read)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@pytest.mark.concurrent
class TestProtocol:
    """The hot path speaks HTTP as uvicorn does, and answers as the API does."""

    def test_keep_alive_mixes_hot_path_and_app_requests_and_records_each_query(
        self, served: Served, fresh_session_factory: Callable[[], Session]
    ) -> None:
        """On one connection: a check (with x-request-id and x-correlator echoed, uvicorn's date and server
        headers), a request for the app, a refusal for a bad body, one without a token; each query with a
        known client is recorded once, nothing else is written."""
        talk = Conversation(served)
        try:
            extra = (("x-request-id", "req-1"), ("x-correlator", "corr-1"))
            talk.send(_request(CHECK, _check_body(served.msisdn), token=served.token, extra=extra))
            status, headers, body = talk.response()
            assert (status, json.loads(body)) == (200, {"swapped": True})  # a new line counts as swapped
            assert headers["content-type"] == "application/json"
            assert headers["x-request-id"] == "req-1"
            assert headers["x-correlator"] == "corr-1"
            assert int(headers["content-length"]) == len(body)
            assert {"date", "server"} <= set(headers)
            talk.send(_request("/healthz", b"", token=None))
            assert talk.response()[0] == 200
            talk.send(_request(CHECK, b"{not json", token=served.token))
            status, _, body = talk.response()
            assert (status, json.loads(body)["code"]) == (400, "INVALID_ARGUMENT")
            talk.send(_request(CHECK, _check_body(served.msisdn), token=None))
            status, headers, body = talk.response()
            assert (status, json.loads(body)["code"]) == (401, "UNAUTHENTICATED")
            assert headers["www-authenticate"].startswith("Bearer")
            assert len(headers["x-request-id"]) == 32
        finally:
            talk.close()
        served.stop()
        logged = served.log.read_text(errors="replace")
        assert f'"POST {CHECK} HTTP/1.1" 200' in logged  # uvicorn's access log line, as for any request
        assert f'"POST {CHECK} HTTP/1.1" 400' in logged
        assert "Logging error" not in logged
        with fresh_session_factory() as s:
            rows = [(q.api, q.msisdn, q.status) for q in logged_queries(s)]
        assert [tuple(r) for r in rows] == [
            ("sim-swap.check", served.msisdn, 200),
            ("sim-swap.check", None, 400),
        ]

    def test_keep_alive_timeout_closes_idle_connections_only(self, served: Served) -> None:
        """With SIMKEEP_HTTP_KEEPALIVE_SECONDS=3, a connection asking every second (checks and app
        requests) stays open well past 3 s; once idle, the server closes it, not before the timeout.
        Asserted on behaviour with wide margins (the close may come a little after the timeout)."""
        talk = Conversation(served)
        try:
            started = time.monotonic()
            for i in range(6):
                if i % 2:
                    talk.send(_request("/healthz", b"", token=None))
                else:
                    talk.send(_request(CHECK, _check_body(served.msisdn), token=served.token))
                assert talk.response()[0] == 200
                time.sleep(1.0)
            assert time.monotonic() - started > KEEPALIVE + 2
            talk.send(_request(CHECK, _check_body(served.msisdn), token=served.token))
            assert talk.response()[0] == 200
            idle_since = time.monotonic()
            talk.sock.settimeout(KEEPALIVE * 10)
            assert talk.closed()
            assert time.monotonic() - idle_since >= KEEPALIVE - 0.5
        finally:
            talk.close()

    def test_pipelined_requests_are_answered_in_their_order(self, served: Served) -> None:
        """Five requests in one write (hot path, app, hot path, hot path, the hot path with a query string
        that goes through the app) come back in the order asked, each with its own answer."""
        talk = Conversation(served)
        try:
            talk.send(
                _request(CHECK, _check_body(served.msisdn), token=served.token)
                + _request("/healthz", b"", token=None)
                + _request(CHECK, _check_body(UNKNOWN), token=served.token)
                + _request(RETRIEVE, json.dumps({"phoneNumber": served.msisdn}).encode(), token=served.token)
                + _request(CHECK + "?trace=1", _check_body(served.msisdn), token=served.token)
            )
            answers = [talk.response() for _ in range(5)]
        finally:
            talk.close()
        assert [a[0] for a in answers] == [200, 200, 404, 200, 200]
        assert json.loads(answers[0][2]) == {"swapped": True}
        assert json.loads(answers[1][2])["status"] == "ok"
        assert json.loads(answers[2][2])["code"] == "IDENTIFIER_NOT_FOUND"
        assert json.loads(answers[3][2])["latestSimChange"].endswith("Z")
        assert json.loads(answers[4][2]) == {"swapped": True}

    def test_bodies_in_pieces_chunked_and_after_100_continue(self, served: Served) -> None:
        """A body sent in pieces, a chunked body and a body sent after ``100 Continue`` are each answered."""
        body = _check_body(served.msisdn)
        talk = Conversation(served)
        try:
            whole = _request(CHECK, body, token=served.token)
            for piece in (whole[:20], whole[20:-10], whole[-10:]):
                talk.send(piece)
                time.sleep(0.05)
            assert talk.response()[0] == 200
            talk.send(_request(CHECK, body, token=served.token, chunked=True))
            assert talk.response()[0] == 200
            expecting = _request(CHECK, body, token=served.token, extra=(("expect", "100-continue"),))
            talk.send(expecting[: -len(body)])
            assert talk.response()[0] == 100
            talk.send(body)
            status, _, answer = talk.response()
            assert (status, json.loads(answer)) == (200, {"swapped": True})
        finally:
            talk.close()

    def test_http_10_is_answered_and_closed(self, served: Served) -> None:
        """An HTTP/1.0 request gets its answer with ``connection: close``, then the connection closes."""
        talk = Conversation(served)
        try:
            talk.send(_request(CHECK, _check_body(served.msisdn), token=served.token, version=b"1.0"))
            raw = b""
            while not raw.endswith(b"}"):
                chunk = talk.sock.recv(65536)
                assert chunk, "closed before the answer"
                raw += chunk
            assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"\r\nconnection: close\r\n" in raw.lower()
            assert talk.closed()
        finally:
            talk.close()

    @pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
    def test_a_body_over_the_limit_is_refused_and_nothing_recorded(
        self, served: Served, fresh_session_factory: Callable[[], Session], chunked: bool
    ) -> None:
        """A body over the limit (declared, or counted as chunks arrive) gets 413 with a problem document
        and the connection closes; no query is recorded."""
        talk = Conversation(served)
        try:
            padding = " " * (LIMIT + 10)
            body = json.dumps({"phoneNumber": served.msisdn, "pad": padding}).encode()
            talk.send(_request(CHECK, body, token=served.token, chunked=chunked))
            status, headers, answer = talk.response()
            assert status == 413
            assert headers["content-type"] == "application/problem+json"
            assert json.loads(answer)["code"] == "REQUEST_TOO_LARGE"
            assert talk.closed()
        finally:
            talk.close()
        served.stop()
        with fresh_session_factory() as s:
            assert logged_queries(s) == []
