"""Event sinks of CAMARA subscriptions: which addresses may receive events, and posting one event to one.

A sink is a relying party's HTTPS endpoint. Because simkeep connects to whatever address a client names,
sinks are checked against server-side request forgery: in production only ``https`` to public addresses,
checked when the subscription is made and again at each delivery, and the connection goes to the address
that was checked (so a name that later resolves elsewhere cannot redirect it). Redirects are not followed.
Outside production ``SIMKEEP_CAMARA_SINK_ALLOW_HTTP`` lets tests and demos use ``http`` to loopback.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import certifi
import httpx

from simkeep.camara.errors import CamaraError
from simkeep.config import Settings

MAX_SINK_CHARS = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SinkRefused(CamaraError):
    """The sink is not an address simkeep may send to (INVALID_SINK)."""

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_SINK", message)


class DeliveryFailed(RuntimeError):
    """The sink did not take the event (network error or a non-2xx answer); the job is retried."""


class SinkGone(RuntimeError):
    """The sink answered 410 Gone: the relying party no longer listens, so the subscription ends."""


@dataclass(frozen=True)
class CheckedSink:
    """A sink that passed the checks, with the address to connect to."""

    url: str
    parts: SplitResult
    address: IPAddress


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise SinkRefused(f"The sink's host {host!r} does not resolve.") from exc
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    if not found:
        raise SinkRefused(f"The sink's host {host!r} does not resolve.")
    return found


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


def check_sink(settings: Settings, sink: object) -> CheckedSink:
    """The sink as a URL simkeep may post to; INVALID_SINK with the reason otherwise."""
    if not isinstance(sink, str) or not sink or len(sink) > MAX_SINK_CHARS:
        raise SinkRefused(f"sink must be an absolute https URL of at most {MAX_SINK_CHARS} characters.")
    try:
        parts = urlsplit(sink)
        port = parts.port
    except ValueError as exc:
        raise SinkRefused("sink is not a valid URL.") from exc
    production = settings.environment == "production"
    allow_http = settings.camara_sink_allow_http and not production
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not allow_http):
        raise SinkRefused("sink must be an https URL.")
    if not parts.hostname:
        raise SinkRefused("sink must name a host.")
    if parts.username is not None or parts.password is not None:
        raise SinkRefused("sink must not carry credentials in the URL; use sinkCredential.")
    if parts.fragment:
        raise SinkRefused("sink must not have a fragment.")
    if any(ch.isspace() for ch in sink):
        raise SinkRefused("sink must not contain white space.")
    addresses = _resolve(parts.hostname, port or (443 if parts.scheme == "https" else 80))
    if parts.scheme == "http" and not all(a.is_loopback for a in addresses):
        raise SinkRefused("An http sink is only allowed to a loopback address (tests); use https.")
    if production and not all(_public(a) for a in addresses):
        raise SinkRefused("sink resolves to a private, loopback or reserved address, which is not allowed.")
    return CheckedSink(sink, parts, addresses[0])


def _pinned(checked: CheckedSink) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL with the checked address as its host, the Host header and (for https) the TLS name."""
    parts = checked.parts
    host = str(checked.address)
    if checked.address.version == 6:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    hostname = parts.hostname or ""
    host_header = hostname if parts.port is None else f"{hostname}:{parts.port}"
    extensions: dict[str, Any] = {}
    if parts.scheme == "https":
        extensions["sni_hostname"] = hostname
    return url, {"Host": host_header}, extensions


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The TLS settings of deliveries: certificates verified against the configured CA file (or the usual
    public authorities, certifi's bundle, as httpx trusts by default), and simkeep's client certificate
    presented when one is configured."""
    return _tls_context(
        settings.camara_sink_ca_file,
        settings.camara_sink_client_cert_file,
        settings.camara_sink_client_key_file,
    )


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or certifi.where())
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def post_event(
    settings: Settings, sink: str, event: dict[str, Any], *, authorization: str | None = None
) -> int:
    """POST one CloudEvent (structured JSON mode) to ``sink``; returns the status of a 2xx answer.

    Raises :class:`SinkGone` on 410, :class:`DeliveryFailed` on any other failure, and INVALID_SINK when
    the sink no longer passes the checks (its name now resolves to a refused address).
    """
    checked = check_sink(settings, sink)
    url, headers, extensions = _pinned(checked)
    headers["Content-Type"] = "application/cloudevents+json"
    headers["x-correlator"] = str(event["id"])
    if authorization is not None:
        headers["Authorization"] = authorization
    body = json.dumps(event, separators=(",", ":")).encode()
    try:
        verify = tls_context(settings)
    except OSError as exc:  # a CA or certificate file missing, unreadable or not PEM (ssl.SSLError too)
        raise DeliveryFailed(f"the sink TLS settings could not be loaded: {type(exc).__name__}") from exc
    try:
        with httpx.Client(
            timeout=settings.camara_sink_timeout_seconds, follow_redirects=False, verify=verify
        ) as client:
            response = client.post(url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"the sink could not be reached: {type(exc).__name__}") from exc
    if response.status_code == 410:
        raise SinkGone("the sink answered 410 Gone")
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"the sink answered {response.status_code}")
    return response.status_code
