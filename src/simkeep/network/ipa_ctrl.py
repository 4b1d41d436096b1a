"""A client of the Osmocom CTRL interface (osmo-hlr's port 4259).

Each message travels in an IPA frame: a 2-byte big-endian length, the protocol byte ``0xEE`` (OSMO
extension), the extension byte ``0x00`` (CTRL), then ASCII text: ``GET <id> <var>`` or
``SET <id> <var> <value>``. The answer is ``GET_REPLY <id> <var> <value>``, ``SET_REPLY <id> <var> <value>``
or ``ERROR <id> <reason>``; the value may span several lines. The peer may also send IPA keep-alive pings
(protocol ``0xFE``), answered here, and TRAPs, skipped.

One connection is kept open and reused; requests are serialised by a lock. A connection that turns out to
be dead when reused (the HLR restarted) is replaced once, transparently; otherwise any failure to connect,
send or receive within ``timeout`` seconds raises :class:`CtrlUnavailable`.
"""

from __future__ import annotations

import itertools
import re
import socket
import struct
import threading
import time
from types import TracebackType

IPA_PROTO_OSMO = 0xEE
IPA_PROTO_CCM = 0xFE
IPA_EXT_CTRL = 0x00
_CCM_PING = 0x00
_CCM_PONG = 0x01
_MAX_FRAME = 0xFFFF - 1
#: Variables and values are plain tokens: no spaces or control characters that would break the framing.
_TOKEN = re.compile(r"[\x21-\x7e]+")


class CtrlError(Exception):
    """A CTRL exchange failed."""


class CtrlUnavailable(CtrlError):
    """The CTRL server could not be reached, closed the connection or did not answer in time."""


class CtrlRefused(CtrlError):
    """The CTRL server answered ERROR; ``reason`` is its text (e.g. ``No such subscriber.``)."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


class _DeadConnection(CtrlUnavailable):
    """A reused connection was found closed before any answer came back."""


class CtrlClient:
    """GET and SET over one IPA-framed CTRL connection, with connect and read timeouts."""

    def __init__(self, host: str, port: int, *, timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def __enter__(self) -> CtrlClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later request opens a new one)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def get(self, variable: str) -> str:
        """The value of ``variable``; raises :class:`CtrlRefused` on ERROR."""
        return self._request("GET", variable, None)

    def set(self, variable: str, value: str) -> str:
        """Set ``variable`` to ``value``; returns the reply's value (often ``OK``)."""
        return self._request("SET", variable, value)

    # --- the exchange -------------------------------------------------------------------------------------

    def _request(self, verb: str, variable: str, value: str | None) -> str:
        if not _TOKEN.fullmatch(variable) or (value is not None and not _TOKEN.fullmatch(value)):
            raise ValueError("CTRL variables and values are single printable ASCII tokens")
        with self._lock:
            reused = self._sock is not None
            try:
                try:
                    return self._exchange(verb, variable, value)
                except _DeadConnection:
                    if not reused:
                        raise
                    self.close()
                    return self._exchange(verb, variable, value)  # the HLR restarted since: one fresh try
            except CtrlUnavailable:
                self.close()
                raise

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except OSError as exc:
                raise CtrlUnavailable(f"cannot reach CTRL at {self.host}:{self.port}: {exc}") from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
        return self._sock

    def _exchange(self, verb: str, variable: str, value: str | None) -> str:
        sock = self._connect()
        request_id = str(next(self._ids))
        text = f"{verb} {request_id} {variable}" + (f" {value}" if value is not None else "")
        payload = bytes([IPA_EXT_CTRL]) + text.encode("ascii")
        if len(payload) > _MAX_FRAME:
            raise ValueError("CTRL request too long")
        try:
            sock.sendall(struct.pack(">HB", len(payload), IPA_PROTO_OSMO) + payload)
        except OSError as exc:
            raise _DeadConnection(f"CTRL connection lost: {exc}") from exc
        deadline = time.monotonic() + self.timeout
        first = True
        while True:
            proto, body = self._read_frame(sock, deadline, dead_if_closed=first)
            first = False
            if proto == IPA_PROTO_CCM:
                if body[:1] == bytes([_CCM_PING]):
                    self._send_raw(sock, IPA_PROTO_CCM, bytes([_CCM_PONG]))
                continue
            if proto != IPA_PROTO_OSMO or body[:1] != bytes([IPA_EXT_CTRL]):
                continue
            answer = self._match(body[1:].decode("utf-8", "replace"), request_id, variable)
            if answer is not None:
                return answer

    @staticmethod
    def _match(message: str, request_id: str, variable: str) -> str | None:
        kind, _, rest = message.partition(" ")
        if kind == "ERROR":
            got_id, _, reason = rest.partition(" ")
            if got_id == request_id:
                raise CtrlRefused(variable, reason.strip())
            return None
        if kind in {"GET_REPLY", "SET_REPLY"}:
            got_id, _, rest = rest.partition(" ")
            if got_id != request_id:
                return None
            _, _, answer = rest.partition(" ")
            return answer
        return None  # a TRAP or something this client did not ask for

    def _send_raw(self, sock: socket.socket, proto: int, payload: bytes) -> None:
        try:
            sock.sendall(struct.pack(">HB", len(payload), proto) + payload)
        except OSError as exc:
            raise CtrlUnavailable(f"CTRL connection lost: {exc}") from exc

    def _read_frame(self, sock: socket.socket, deadline: float, *, dead_if_closed: bool) -> tuple[int, bytes]:
        header = self._read_exact(sock, 3, deadline, dead_if_closed=dead_if_closed)
        length, proto = struct.unpack(">HB", header)
        return proto, self._read_exact(sock, length, deadline, dead_if_closed=False)

    def _read_exact(self, sock: socket.socket, size: int, deadline: float, *, dead_if_closed: bool) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CtrlUnavailable(
                    f"CTRL at {self.host}:{self.port} did not answer within {self.timeout}s"
                )
            sock.settimeout(remaining)
            try:
                data = sock.recv(size - len(chunks))
            except TimeoutError as exc:
                raise CtrlUnavailable(
                    f"CTRL at {self.host}:{self.port} did not answer within {self.timeout}s"
                ) from exc
            except OSError as exc:
                if dead_if_closed and not chunks:
                    raise _DeadConnection(f"CTRL connection lost: {exc}") from exc
                raise CtrlUnavailable(f"CTRL connection lost: {exc}") from exc
            if not data:
                if dead_if_closed and not chunks:
                    raise _DeadConnection("CTRL connection closed by the server")
                raise CtrlUnavailable("CTRL connection closed by the server")
            chunks += data
        return bytes(chunks)
