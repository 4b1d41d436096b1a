"""Real servers on loopback for the transport tests: SMTP (aiosmtpd) and an SMSC (node-smpp).

The SMSC is ``smpp_server/server.js`` on the npm package ``smpp``; its dependencies are installed with
``npm ci`` on first use. Without node and npm the SMPP tests are skipped, saying so.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer  # noqa: N811 - the class is named as a constant upstream
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from simkeep.config import Settings
from simkeep.notifications.transports import close_transports

SMPP_SERVER_DIR = Path(__file__).parent / "smpp_server"
SMTP_USER, SMTP_PASSWORD = "mailer", "s3cret-mail"
SMPP_SYSTEM_ID, SMPP_PASSWORD = "simkeep", "secret"


@pytest.fixture(autouse=True)
def _close_transports() -> Iterator[None]:
    """Every test builds its transports anew (a bound SMPP link does not outlive its test)."""
    close_transports()
    yield
    close_transports()


# --- TLS -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context with this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A certificate made for this run (the client trusts it through SIMKEEP_SMTP_CA_FILE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return TlsFiles(cert_path, key_path)


# --- SMTP ------------------------------------------------------------------------------------------------


@dataclass
class Received:
    """One message an SMTP server took."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    tls: bool
    login: str | None

    @property
    def email(self) -> EmailMessage:
        """The message, parsed."""
        return cast(EmailMessage, message_from_bytes(self.raw, policy=default_policy))


@dataclass
class MailHandler:
    """aiosmtpd handler that keeps what it is given, or refuses recipients while ``refuse`` is set."""

    refuse: str | None = None
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        """Refuse with ``refuse`` (for example a 550) or accept."""
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTPServer, session: Session, envelope: Envelope
    ) -> str:
        """Keep the message."""
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                raw=bytes(envelope.original_content or b""),
                tls=server.transport.get_extra_info("ssl_object") is not None,
                login=login,
            )
        )
        return "250 2.0.0 Ok: queued"


def _authenticate(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class _Controller(Controller):  # type: ignore[misc]
    """aiosmtpd's threaded controller on an ephemeral port."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpServer:
    """A running SMTP server and what it received."""

    port: int
    handler: MailHandler
    tls: str

    @property
    def received(self) -> list[Received]:
        """The messages it took, oldest first."""
        return self.handler.received

    def settings(self, base: Settings, **overrides: Any) -> Settings:
        """``base`` sending e-mail to this server (TLS, and the login when it asks for one)."""
        values: dict[str, Any] = {
            "email_transport": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_tls": self.tls,
            "smtp_from": "运营商通知 <notify@operator.example>",
            "smtp_timeout_seconds": 5.0,
        }
        return base.model_copy(update=values | overrides)


@pytest.fixture
def smtp_server(tls_files: TlsFiles) -> Iterator[Callable[..., SmtpServer]]:
    """Start SMTP servers: ``smtp_server(tls="off"|"starttls"|"implicit", auth=False, refuse=None)``."""
    controllers: list[_Controller] = []

    def start(*, tls: str = "off", auth: bool = False, refuse: str | None = None) -> SmtpServer:
        handler = MailHandler(refuse=refuse)
        options: dict[str, Any] = {}
        if tls == "starttls":
            options |= {"tls_context": tls_files.server_context(), "require_starttls": True}
        elif tls == "implicit":
            # aiosmtpd cannot tell that a connection it accepted with ssl_context is TLS: without this it
            # would not offer AUTH on it.
            options |= {"ssl_context": tls_files.server_context(), "auth_require_tls": False}
        if auth:
            options |= {"authenticator": _authenticate, "auth_required": True}
        controller = _Controller(handler, hostname="127.0.0.1", port=0, **options)
        controller.start()
        controllers.append(controller)
        return SmtpServer(port=controller.port, handler=handler, tls=tls)

    yield start
    for controller in controllers:
        controller.stop()


class RawServer:
    """A TCP server that accepts and then either closes at once (``drop``) or says nothing (``silent``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "drop":
                conn.close()
            else:
                self.held.append(conn)

    def close(self) -> None:
        """Stop listening and close what is held."""
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[str], RawServer]]:
    """Start misbehaving TCP servers (see :class:`RawServer`)."""
    servers: list[RawServer] = []

    def start(mode: str) -> RawServer:
        server = RawServer(mode)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


# --- SMPP ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    """The node program, with the test SMSC's npm dependencies installed (``npm ci``) on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(
            "the SMPP tests need node and npm (Debian: apt-get install nodejs npm) for their test SMSC"
        )
    if not (SMPP_SERVER_DIR / "node_modules" / "smpp" / "package.json").exists():
        done = subprocess.run(  # noqa: S603 - a fixed command
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=SMPP_SERVER_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {SMPP_SERVER_DIR} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return node


class Smsc:
    """The test SMSC in a node process, and the events it reported (see ``smpp_server/server.js``)."""

    def __init__(self, node: str, config: dict[str, Any]) -> None:
        self.config = config
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command
            [node, str(SMPP_SERVER_DIR / "server.js"), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first:
            self.process.wait(timeout=10)
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"the test SMSC did not start: {stderr}")
        self.port = int(json.loads(first)["port"])
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()

    def of(self, event: str) -> list[dict[str, Any]]:
        """The events of one kind, in order."""
        with self._changed:
            return [e for e in self.events if e["event"] == event]

    def wait_for(self, event: str, count: int = 1) -> list[dict[str, Any]]:
        """The events of one kind once there are ``count`` of them (a stuck server fails the test)."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: len([e for e in self.events if e["event"] == event]) >= count, 30
            ):
                raise AssertionError(f"expected {count} {event} event(s); the SMSC reported {self.events}")
            return [e for e in self.events if e["event"] == event]

    def settings(self, base: Settings, **overrides: Any) -> Settings:
        """``base`` sending SMS to this SMSC."""
        values: dict[str, Any] = {
            "sms_transport": "smpp",
            "smpp_host": "127.0.0.1",
            "smpp_port": self.port,
            "smpp_system_id": SMPP_SYSTEM_ID,
            "smpp_password": SMPP_PASSWORD,
            "smpp_system_type": "SIMKEEP",
            "smpp_source_addr": "10658888",
            "smpp_source_addr_ton": 3,
            "smpp_source_addr_npi": 1,
            "smpp_timeout_seconds": 5.0,
        }
        return base.model_copy(update=values | overrides)

    def stop(self) -> None:
        """End the process."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def smsc(node: str) -> Iterator[Callable[..., Smsc]]:
    """Start test SMSCs: ``smsc(receipts="none"|"session"|"receiver", submit_status=0, ...)``."""
    started: list[Smsc] = []

    def start(**config: Any) -> Smsc:
        server = Smsc(node, {"system_id": SMPP_SYSTEM_ID, "password": SMPP_PASSWORD} | config)
        started.append(server)
        return server

    yield start
    close_transports()  # unbind while the SMSC is still there
    for server in started:
        server.stop()
