"""Transports that deliver a message, chosen per channel: e-mail over SMTP, SMS over SMPP, or embedded ones.

The embedded transports are the console (the log), a file outbox (the demo and the tests read it) and a null
transport (benchmarks). ``SIMKEEP_EMAIL_TRANSPORT`` and ``SIMKEEP_SMS_TRANSPORT`` choose a transport for each
channel; unset, a channel uses ``SIMKEEP_OTP_TRANSPORT``. :func:`get_transport` returns one object that sends
each message through its channel's transport. Transports are built on first use and kept for the process
(an SMPP link stays bound between messages); :func:`close_transports` closes them.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import sys
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from simkeep.config import Settings
from simkeep.logging import get_logger

CHANNELS = ("email", "sms")


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to one address."""

    channel: str  # "email" | "sms"
    to: str
    subject: str
    body: str
    template: str
    #: The idempotency key of the job that sends it: the same key is never delivered twice where the
    #: transport can tell (the file outbox, the no-op transport; SMTP puts it in the Message-ID).
    key: str | None = None


class Transport(Protocol):
    """Delivers messages; raises on failure."""

    def send(self, message: OutgoingMessage) -> str | None:
        """Deliver ``message`` or raise; returns the provider's message id where it gives one."""


class TransportError(RuntimeError):
    """A message could not be handed over: the server refused it, the link failed or timed out.

    The text names what went wrong for an admin reading a dead job; it never holds a password or a full
    address.
    """


class ConsoleTransport:
    """The embedded default: prints each message, as the phone or mailbox would show it, on the terminal.

    This is a delivery, not a log line: the demo's holder reads their one-time code here. The log itself
    records only the envelope. Use SMTP and SMPP (or ``file``) wherever people other than the holder can
    read the terminal.
    """

    def send(self, message: OutgoingMessage) -> None:
        """Print the message to standard error and log its envelope."""
        print(  # noqa: T201 - the terminal is this transport's delivery channel
            f"\n--- {message.channel} to {message.to} ({message.template}) ---\n"
            f"{message.subject}\n{message.body}\n---",
            file=sys.stderr,
            flush=True,
        )
        get_logger("simkeep.notifications").info(
            "notification.sent", channel=message.channel, template=message.template, transport="console"
        )


class FileTransport:
    """Writes each message as a JSON file into an outbox directory, where the demo (and tests) read them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: OutgoingMessage) -> None:
        """Write the message atomically (temp file, then rename); a key already written is skipped."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if message.key is not None:
            digest = hashlib.sha256(message.key.encode()).hexdigest()[:32]
            path = self.directory / f"k-{digest}.json"
            if path.exists():
                return
        else:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            path = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.json"
        tmp = path.with_name(f".{path.stem}-{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(asdict(message), ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(tmp, path)


class NullTransport:
    """Delivers nowhere, counting what it was given (for benchmarks and dry runs)."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, message: OutgoingMessage) -> None:  # noqa: ARG002 - the interface's argument
        """Count the message."""
        self.sent += 1


def read_outbox(directory: Path) -> list[OutgoingMessage]:
    """The messages in an outbox directory, oldest first."""
    if not directory.exists():
        return []
    paths = sorted(directory.glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [OutgoingMessage(**json.loads(p.read_text(encoding="utf-8"))) for p in paths]


class ChannelTransports:
    """Sends each message through the transport configured for its channel, built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def transport(self, channel: str) -> Transport:
        """The transport of ``channel``; an unknown channel or transport is refused with ValueError."""
        return _build(self.settings, channel)

    def send(self, message: OutgoingMessage) -> str | None:
        """Deliver ``message`` through its channel's transport."""
        return self.transport(message.channel).send(message)


def transport_kind(settings: Settings, channel: str) -> str:
    """The transport configured for ``channel``: its own setting, else SIMKEEP_OTP_TRANSPORT."""
    chosen = settings.email_transport if channel == "email" else settings.sms_transport
    return chosen or settings.otp_transport


_lock = threading.Lock()
_built: dict[tuple[object, ...], Transport] = {}
_exit_hook_set = False


def _build(settings: Settings, channel: str) -> Transport:
    """The transport of ``channel``, built once per configuration and process."""
    if channel not in CHANNELS:
        msg = f"no transport for channel {channel!r} (email or sms)"
        raise ValueError(msg)
    kind = transport_kind(settings, channel)
    key: tuple[object, ...]
    if kind == "smtp" and channel == "email":
        from simkeep.notifications.smtp import SmtpConfig

        key = (kind, SmtpConfig.from_settings(settings))
    elif kind == "smpp" and channel == "sms":
        from simkeep.notifications.smpp import SmppConfig

        key = (
            kind,
            SmppConfig.from_settings(settings),
            settings.database_url,
            settings.sqlite_busy_timeout_ms,
        )
    elif kind == "file":
        key = (kind, settings.otp_outbox_dir)
    elif kind in ("console", "null"):
        key = (kind,)
    else:
        allowed = "console, file, smtp or null" if channel == "email" else "console, file, smpp or null"
        msg = f"unknown {channel} transport {kind!r} ({allowed})"
        raise ValueError(msg)
    with _lock:
        found = _built.get(key)
        if found is None:
            found = _built[key] = _make(key, settings)
        return found


def _make(key: tuple[object, ...], settings: Settings) -> Transport:
    kind = key[0]
    if kind == "smtp":
        from simkeep.notifications.smtp import SmtpConfig, SmtpTransport

        assert isinstance(key[1], SmtpConfig)
        return SmtpTransport(key[1])
    if kind == "smpp":
        from simkeep.notifications.receipts import ReceiptSpooler
        from simkeep.notifications.smpp import SmppConfig, SmppTransport

        assert isinstance(key[1], SmppConfig)
        global _exit_hook_set  # noqa: PLW0603 - one hook per process, set on the first SMPP link
        if not _exit_hook_set:
            atexit.register(close_transports)
            _exit_hook_set = True
        spooler = ReceiptSpooler(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        return SmppTransport(key[1], on_receipt=spooler)
    if kind == "file":
        return FileTransport(Path(settings.otp_outbox_dir))
    if kind == "console":
        return ConsoleTransport()
    return NullTransport()


def get_transport(settings: Settings) -> ChannelTransports:
    """The configured transports, one per channel, behind one :class:`Transport`."""
    return ChannelTransports(settings)


def close_transports() -> None:
    """Close every transport built so far (SMPP links unbind; receipts still in hand are written first)."""
    with _lock:
        built = list(_built.values())
        _built.clear()
    for transport in built:
        close = getattr(transport, "close", None)
        if callable(close):
            close()
