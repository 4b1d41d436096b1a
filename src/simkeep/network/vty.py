"""A minimal client of an Osmocom VTY (the telnet command line, osmo-hlr's port 4258).

The server greets with a banner and a prompt such as ``OsmoHLR> ``; ``enable`` turns it into ``OsmoHLR# ``.
A command is sent as one line; the server echoes it, prints its output, then the prompt again. Lines that
start with ``%`` are the VTY's messages: errors (``% Unknown command.``, ``% No subscriber for imsi = ...``)
unless the caller names them as expected (osmo-hlr also reports successes that way). Telnet option
negotiation from the server is stripped and left unanswered, which the VTY accepts.

Every read has a timeout: no byte from the server within ``timeout`` seconds raises :class:`VtyUnavailable`,
as does failing to connect.
"""

from __future__ import annotations

import re
import socket
import threading
from types import TracebackType

IAC, SB, SE = 255, 250, 240
_NEGOTIATION = {251, 252, 253, 254}  # WILL, WONT, DO, DONT
_PROMPT = re.compile(rb"(?:^|\n)([A-Za-z0-9_.-]+(?:\([A-Za-z0-9_.-]+\))?[>#]) $")
_MAX_OUTPUT = 256 * 1024 * 1024
_TAIL = 256


class VtyError(Exception):
    """A VTY exchange failed."""


class VtyUnavailable(VtyError):
    """The VTY could not be reached, closed the connection or went silent for longer than the timeout."""


class VtyCommandError(VtyError):
    """The VTY answered a command with an error line (``% ...``)."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"{command}: {message}")
        self.command = command
        self.message = message


def strip_telnet(data: bytes) -> bytes:
    """``data`` without telnet commands (IAC sequences); ``IAC IAC`` stands for a literal 0xFF."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte != IAC:
            out.append(byte)
            i += 1
            continue
        if i + 1 >= n:
            break
        cmd = data[i + 1]
        if cmd == IAC:
            out.append(IAC)
            i += 2
        elif cmd in _NEGOTIATION:
            i += 3
        elif cmd == SB:
            end = data.find(bytes([IAC, SE]), i + 2)
            i = n if end < 0 else end + 2
        else:
            i += 2
    return bytes(out)


class VtyClient:
    """Commands over one telnet connection to an Osmocom VTY."""

    def __init__(self, host: str, port: int, *, timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.prompt = ""
        self._sock: socket.socket | None = None
        self._pending = b""  # raw bytes of a telnet sequence split across two reads
        self._lock = threading.Lock()

    def __enter__(self) -> VtyClient:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Open the connection and wait for the first prompt."""
        if self._sock is not None:
            return
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise VtyUnavailable(f"cannot reach the VTY at {self.host}:{self.port}: {exc}") from exc
        try:
            self._read_until_prompt()
        except VtyError:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._pending = b""

    def enable(self) -> None:
        """Enter the privileged (``#``) node, where the management commands live."""
        if not self.prompt.endswith("#"):
            self.command("enable")

    def command(self, command: str, *, accept: tuple[str, ...] = ()) -> list[str]:
        """Run ``command``; its output lines (without the echo and the prompt).

        A line starting with ``%`` raises :class:`VtyCommandError`, unless it starts with one of ``accept``.
        """
        if not command or any(c in command for c in "\r\n\x00") or not command.isprintable():
            raise ValueError("a VTY command is one printable line")
        with self._lock:
            self.connect()
            assert self._sock is not None
            try:
                self._sock.sendall(command.encode() + b"\n")
            except OSError as exc:
                self.close()
                raise VtyUnavailable(f"VTY connection lost: {exc}") from exc
            try:
                text = self._read_until_prompt()
            except VtyUnavailable:
                self.close()
                raise
        lines = [line.rstrip() for line in text.replace("\r", "").split("\n")]
        if lines and lines[0].strip() == command.strip():
            lines = lines[1:]  # the server's echo
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("%") and not any(stripped.startswith(a) for a in accept):
                raise VtyCommandError(command, stripped.lstrip("% ").strip())
        return lines

    def _read_until_prompt(self) -> str:
        """Everything up to the next prompt (remembered in ``prompt``), prompt excluded."""
        assert self._sock is not None
        buffer = bytearray()
        self._sock.settimeout(self.timeout)
        while True:
            try:
                data = self._sock.recv(65536)
            except TimeoutError as exc:
                raise VtyUnavailable(
                    f"the VTY at {self.host}:{self.port} went silent for {self.timeout}s"
                ) from exc
            except OSError as exc:
                raise VtyUnavailable(f"VTY connection lost: {exc}") from exc
            if not data:
                raise VtyUnavailable("VTY connection closed by the server")
            raw = self._pending + data
            cut = raw.rfind(bytes([IAC]))
            if cut >= 0 and cut >= len(raw) - 2 and not raw.endswith(bytes([IAC, IAC])):
                self._pending, raw = raw[cut:], raw[:cut]  # an unfinished telnet sequence: keep for later
            else:
                self._pending = b""
            buffer += strip_telnet(raw)
            if len(buffer) > _MAX_OUTPUT:
                raise VtyUnavailable("VTY output too large")
            if buffer.rstrip().endswith(b"Password:"):
                raise VtyCommandError(
                    "login", "the VTY asks for a password; bind it where only simkeep reaches it"
                )
            offset = max(0, len(buffer) - _TAIL)  # the prompt ends the output: look at its end only
            match = _PROMPT.search(buffer, offset)
            if match is not None and (offset == 0 or buffer[match.start()] == ord("\n")):
                self.prompt = match.group(1).decode()
                return buffer[: match.start()].decode("utf-8", "replace")
