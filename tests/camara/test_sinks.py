"""Event sinks: which addresses simkeep may post to (SSRF), and delivery over TLS to the checked address."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from simkeep.camara import sinks
from simkeep.camara.errors import CamaraError
from simkeep.config import Settings
from tests.conftest import TEST_SECRET


def _settings(environment: str, *, allow_http: bool = False) -> Settings:
    return Settings(environment="test", secret_key=TEST_SECRET).model_copy(
        update={"environment": environment, "camara_sink_allow_http": allow_http}
    )


PRODUCTION = _settings("production")
TESTING = _settings("test", allow_http=True)


class TestCheckSink:
    """``check_sink``: https to public addresses in production; the reason told otherwise."""

    @pytest.mark.parametrize(
        "sink",
        [
            "https://127.0.0.1/events",
            "https://localhost/events",
            "https://10.1.2.3/events",
            "https://172.16.0.9/events",
            "https://192.168.1.1/events",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/events",
            "https://0.0.0.0/events",
            "https://[::1]/events",
            "https://[fd00::1]/events",
            "https://[fe80::1]/events",
            "https://[::ffff:10.0.0.1]/events",
            "https://224.0.0.1/events",
        ],
    )
    def test_production_refuses_private_addresses(self, sink: str) -> None:
        """Loopback, private, link-local (cloud metadata), shared, unspecified, multicast and IPv4-mapped
        private addresses are INVALID_SINK in production."""
        with pytest.raises(CamaraError) as refused:
            sinks.check_sink(PRODUCTION, sink)
        assert refused.value.code == "INVALID_SINK"
        assert "address" in refused.value.message

    @pytest.mark.parametrize(
        ("sink", "reason"),
        [
            ("http://93.184.216.34/events", "https"),
            ("http://127.0.0.1:8080/events", "https"),
            ("ftp://93.184.216.34/x", "https"),
            ("https://user:pw@93.184.216.34/x", "credentials"),
            ("https:///events", "host"),
            ("https://93.184.216.34/x#frag", "fragment"),
            ("https://93.184.216.34:99999/x", "valid URL"),
            ("https://no-such-host.invalid/x", "does not resolve"),
            ("", "https URL"),
            ("https://" + "a" * 2100, "2048"),
        ],
    )
    def test_production_refuses_bad_urls(self, sink: str, reason: str) -> None:
        """http (even to loopback), other schemes, credentials in the URL, no host, a fragment, a bad port,
        an unresolvable name, empty or overlong: INVALID_SINK saying why."""
        with pytest.raises(CamaraError) as refused:
            sinks.check_sink(PRODUCTION, sink)
        assert refused.value.code == "INVALID_SINK"
        assert reason in refused.value.message

    def test_production_allows_public_https(self) -> None:
        """An https sink on a public address passes, and the address to connect to is the checked one."""
        checked = sinks.check_sink(PRODUCTION, "https://93.184.216.34:8443/hooks?x=1")
        assert str(checked.address) == "93.184.216.34"

    def test_allow_http_setting_is_ignored_in_production(self) -> None:
        """SIMKEEP_CAMARA_SINK_ALLOW_HTTP does not open http in production."""
        with pytest.raises(CamaraError):
            sinks.check_sink(_settings("production", allow_http=True), "http://127.0.0.1/x")

    def test_http_outside_production_only_to_loopback(self) -> None:
        """Outside production, with the setting, http is allowed to loopback and nowhere else."""
        assert sinks.check_sink(TESTING, "http://127.0.0.1:9/x").url == "http://127.0.0.1:9/x"
        with pytest.raises(CamaraError) as refused:
            sinks.check_sink(TESTING, "http://93.184.216.34/x")
        assert "loopback" in refused.value.message

    def test_http_refused_without_the_setting(self) -> None:
        """Outside production, without the setting, http is refused too."""
        with pytest.raises(CamaraError):
            sinks.check_sink(_settings("test"), "http://127.0.0.1/x")


def _certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the name ``localhost``."""
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
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[str, Path, list[dict[str, str]]]]:
    """An HTTPS receiver on 127.0.0.1 with a certificate for ``localhost``: (port, CA file, headers got)."""
    with _tls_server(tmp_path, client_ca=None) as running:
        yield running


@pytest.fixture
def client_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """simkeep's own certificate and key for mutual TLS (self-signed: its own CA)."""
    (tmp_path / "client").mkdir()
    return _certificate(tmp_path / "client")


@pytest.fixture
def mtls_receiver(
    tmp_path: Path, client_certificate: tuple[Path, Path]
) -> Iterator[tuple[str, Path, list[dict[str, str]]]]:
    """:func:`tls_receiver` that also demands a client certificate issued by ``client_certificate``."""
    with _tls_server(tmp_path, client_ca=client_certificate[0]) as running:
        yield running


@contextmanager
def _tls_server(
    tmp_path: Path, *, client_ca: Path | None
) -> Iterator[tuple[str, Path, list[dict[str, str]]]]:
    cert, key = _certificate(tmp_path)
    got: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield str(server.server_address[1]), cert, got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class TestTlsDelivery:
    """Posting to an https sink connects to the checked address and still verifies the sink's name."""

    def test_delivery_verifies_the_name_at_the_pinned_address(
        self, tls_receiver: tuple[str, Path, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """https://localhost:PORT is reached at 127.0.0.1 with the Host header and TLS name localhost, and
        the certificate for localhost is accepted (trusted here as the test's own CA)."""
        port, ca, got = tls_receiver
        trusting = TESTING.model_copy(update={"camara_sink_ca_file": str(ca)})
        status = sinks.post_event(
            trusting, f"https://localhost:{port}/events", {"id": "e-1"}, authorization="Bearer t"
        )
        assert status == 204
        assert got[0]["host"] == f"localhost:{port}"
        assert got[0]["authorization"] == "Bearer t"

    def test_untrusted_certificate_fails_the_delivery(
        self, tls_receiver: tuple[str, Path, list[dict[str, str]]]
    ) -> None:
        """With the system's trust store the self-signed sink is refused: DeliveryFailed, nothing received."""
        port, _, got = tls_receiver
        with pytest.raises(sinks.DeliveryFailed):
            sinks.post_event(TESTING, f"https://localhost:{port}/events", {"id": "e-2"})
        assert got == []

    def test_wrong_name_fails_the_delivery(
        self, tls_receiver: tuple[str, Path, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A certificate for localhost does not pass for the name 127.0.0.1: the pinned connection checks the
        sink's own name, not just any certificate of the address."""
        port, ca, got = tls_receiver
        trusting = TESTING.model_copy(update={"camara_sink_ca_file": str(ca)})
        with pytest.raises(sinks.DeliveryFailed):
            sinks.post_event(trusting, f"https://127.0.0.1:{port}/events", {"id": "e-3"})
        assert got == []

    @pytest.mark.parametrize("setting", ["camara_sink_ca_file", "camara_sink_client_cert_file"])
    def test_a_missing_or_broken_tls_file_fails_the_delivery_clearly(
        self, tls_receiver: tuple[str, Path, list[dict[str, str]]], tmp_path: Path, setting: str
    ) -> None:
        """A CA or client certificate file that is missing or not PEM fails the delivery with a reason (the
        job queue retries it), and nothing reaches the sink."""
        port, _, got = tls_receiver
        broken = tmp_path / "broken.pem"
        broken.write_text("not a certificate")
        for path in (tmp_path / "missing.pem", broken):
            configured = TESTING.model_copy(update={setting: str(path)})
            with pytest.raises(sinks.DeliveryFailed) as failed:
                sinks.post_event(configured, f"https://localhost:{port}/events", {"id": "e-6"})
            assert "TLS settings could not be loaded" in str(failed.value)
        assert got == []

    def test_mutual_tls_presents_the_configured_client_certificate(
        self, mtls_receiver: tuple[str, Path, list[dict[str, str]]], client_certificate: tuple[Path, Path]
    ) -> None:
        """A sink that demands a client certificate gets simkeep's configured one and takes the event;
        without it the handshake fails and nothing is received."""
        port, ca, got = mtls_receiver
        trusting = TESTING.model_copy(update={"camara_sink_ca_file": str(ca)})
        with pytest.raises(sinks.DeliveryFailed):
            sinks.post_event(trusting, f"https://localhost:{port}/events", {"id": "e-4"})
        assert got == []
        cert, key = client_certificate
        presenting = trusting.model_copy(
            update={"camara_sink_client_cert_file": str(cert), "camara_sink_client_key_file": str(key)}
        )
        assert sinks.post_event(presenting, f"https://localhost:{port}/events", {"id": "e-5"}) == 204
        assert len(got) == 1
