"""The CTRL and VTY clients, against a real osmo-hlr and against servers that misbehave."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from simkeep.network.ipa_ctrl import CtrlClient, CtrlRefused, CtrlUnavailable
from simkeep.network.vty import VtyClient, VtyCommandError, VtyUnavailable, strip_telnet
from tests.network.osmo import OsmoHlrHandle

IMSI = "001010000000001"


class _Server:
    """A TCP server on loopback that runs ``behaviour(conn)`` for each connection."""

    def __init__(self, behaviour: object) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.behaviour = behaviour
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.behaviour(conn)  # type: ignore[operator]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.sock.close()
        self.thread.join(timeout=5)
        for conn in self.conns:
            conn.close()


@pytest.fixture
def silent_server() -> Iterator[_Server]:
    """Accepts connections and never says a word."""
    server = _Server(lambda _conn: None)
    yield server
    server.close()


def _frame(text: str, proto: int = 0xEE) -> bytes:
    payload = (b"\x00" if proto == 0xEE else b"") + text.encode()
    return struct.pack(">HB", len(payload), proto) + payload


class TestCtrlClient:
    def test_get_and_set_against_osmo_hlr(self, hlr_handle: OsmoHlrHandle) -> None:
        """SET creates a subscriber and GET reads its fields back over the IPA-framed protocol."""
        with CtrlClient(hlr_handle.host, hlr_handle.ctrl_port) as ctrl:
            assert ctrl.set("subscriber.create", IMSI).isdigit()
            assert ctrl.get(f"subscriber.by-imsi-{IMSI}.msisdn") == "none"
            assert f"imsi\t{IMSI}" in ctrl.get(f"subscriber.by-imsi-{IMSI}.info")

    def test_error_reply_raises_refused_with_reason(self, hlr_handle: OsmoHlrHandle) -> None:
        """An ERROR answer raises CtrlRefused carrying the server's reason; the connection stays usable."""
        with CtrlClient(hlr_handle.host, hlr_handle.ctrl_port) as ctrl:
            with pytest.raises(CtrlRefused) as info:
                ctrl.get(f"subscriber.by-imsi-{IMSI}.info")
            assert info.value.reason == "No such subscriber."
            assert ctrl.set("subscriber.create", IMSI).isdigit()

    def test_refused_connection_is_unavailable(self, silent_server: _Server) -> None:
        """Nothing listening on the port: CtrlUnavailable at once."""
        port = silent_server.port
        silent_server.close()
        with pytest.raises(CtrlUnavailable, match="cannot reach"), CtrlClient("127.0.0.1", port) as ctrl:
            ctrl.get("x")

    def test_silent_server_times_out(self, silent_server: _Server) -> None:
        """A server that accepts but never answers raises CtrlUnavailable after the read timeout."""
        with (
            pytest.raises(CtrlUnavailable, match="did not answer"),
            CtrlClient("127.0.0.1", silent_server.port, timeout=0.2) as ctrl,
        ):
            ctrl.get("x")

    def test_skips_ping_and_trap_before_the_reply(self) -> None:
        """An IPA ping is answered with a pong and a TRAP is skipped; the matching reply is returned."""
        pongs: list[bytes] = []

        def behaviour(conn: socket.socket) -> None:
            conn.recv(1024)
            conn.sendall(struct.pack(">HB", 1, 0xFE) + b"\x00")  # CCM PING
            conn.sendall(_frame("TRAP 0 some.var 1"))
            pongs.append(conn.recv(1024))
            conn.sendall(_frame("GET_REPLY 1 a.b multi\nline"))

        server = _Server(behaviour)
        try:
            with CtrlClient("127.0.0.1", server.port, timeout=2) as ctrl:
                assert ctrl.get("a.b") == "multi\nline"
            assert pongs == [struct.pack(">HB", 1, 0xFE) + b"\x01"]
        finally:
            server.close()

    def test_reconnects_once_after_server_restart(self, hlr_handle: OsmoHlrHandle) -> None:
        """A kept connection found dead (the HLR restarted) is replaced transparently."""
        with CtrlClient(hlr_handle.host, hlr_handle.ctrl_port) as ctrl:
            ctrl.set("subscriber.create", IMSI)
            hlr_handle.restart()
            assert ctrl.get(f"subscriber.by-imsi-{IMSI}.msisdn") == "none"

    def test_rejects_values_that_break_framing(self) -> None:
        """A value with a space or newline is refused before anything is sent."""
        ctrl = CtrlClient("127.0.0.1", 1)
        with pytest.raises(ValueError, match="single printable"):
            ctrl.set("subscriber.create", "1 2")


class TestVtyClient:
    def test_show_and_enable_against_osmo_hlr(self, hlr_handle: OsmoHlrHandle) -> None:
        """The client learns the prompt, enters enable mode and returns a command's output lines."""
        with CtrlClient(hlr_handle.host, hlr_handle.ctrl_port) as ctrl:
            ctrl.set("subscriber.create", IMSI)
        with VtyClient(hlr_handle.host, hlr_handle.vty_port) as vty:
            assert vty.prompt == "OsmoHLR>"
            vty.enable()
            assert vty.prompt == "OsmoHLR#"
            out = vty.command(f"subscriber imsi {IMSI} show")
        assert f"IMSI: {IMSI}" in [line.strip() for line in out]

    def test_percent_line_raises(self, hlr_handle: OsmoHlrHandle) -> None:
        """A ``%`` error line raises VtyCommandError with the message; accepted prefixes do not."""
        with VtyClient(hlr_handle.host, hlr_handle.vty_port) as vty:
            with pytest.raises(VtyCommandError, match="Unknown command"):
                vty.command("no-such-command")
            with pytest.raises(VtyCommandError, match="No subscriber"):
                vty.command(f"show subscriber imsi {IMSI}")
            lines = vty.command(f"show subscriber imsi {IMSI}", accept=("% No subscriber",))
        assert any("No subscriber" in line for line in lines)

    def test_unreachable_and_silent(self, silent_server: _Server) -> None:
        """A silent server (no prompt within the timeout) and a closed port raise VtyUnavailable."""
        with pytest.raises(VtyUnavailable, match="silent"):
            VtyClient("127.0.0.1", silent_server.port, timeout=0.2).connect()
        port = silent_server.port
        silent_server.close()
        with pytest.raises(VtyUnavailable, match="cannot reach"):
            VtyClient("127.0.0.1", port, timeout=0.2).connect()

    def test_password_prompt_refused(self) -> None:
        """A VTY that asks for a password fails at once with a clear error instead of timing out."""
        server = _Server(lambda conn: conn.sendall(b"Welcome\r\n\xff\xfb\x01Password: "))
        try:
            with pytest.raises(VtyCommandError, match="password"):
                VtyClient("127.0.0.1", server.port, timeout=2).connect()
        finally:
            server.close()

    def test_output_in_small_pieces(self) -> None:
        """Output and prompt arriving a few bytes at a time, telnet commands split, are put together."""
        reply = b"Hi\r\n\xff\xfb\x01\xff\xfb\x03R> "

        def behaviour(conn: socket.socket) -> None:
            for i in range(0, len(reply), 3):
                conn.sendall(reply[i : i + 3])
            conn.recv(100)
            out = b"show x\r\nline one\r\nline two\r\nR> "
            for i in range(0, len(out), 2):
                conn.sendall(out[i : i + 2])

        server = _Server(behaviour)
        try:
            with VtyClient("127.0.0.1", server.port, timeout=2) as vty:
                assert vty.prompt == "R>"
                assert vty.command("show x") == ["line one", "line two"]
        finally:
            server.close()

    def test_multiline_command_refused(self) -> None:
        """A command containing a newline is refused before anything is sent."""
        with pytest.raises(ValueError, match="one printable line"):
            VtyClient("127.0.0.1", 1).command("show\nwrite")


class TestStripTelnet:
    def test_negotiation_and_subnegotiation_removed(self) -> None:
        """WILL/DO option negotiations and SB...SE blocks vanish; IAC IAC becomes one 0xFF byte."""
        data = b"a\xff\xfb\x01b\xff\xfa\x1f\x00\x50\xff\xf0c\xff\xffd"
        assert strip_telnet(data) == b"abc\xffd"
