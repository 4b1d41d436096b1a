"""Transports that deliver a message: the console and a file outbox are the embedded defaults.

SMTP and SMPP transports, behind the durable job queue, come with the notifications issue; they implement
the same :class:`Transport` protocol.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from simkeep.config import Settings
from simkeep.logging import get_logger


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


class ConsoleTransport:
    """Logs that a message was sent, without its body (it may hold a one-time code)."""

    def send(self, message: OutgoingMessage) -> None:
        """Log the message's envelope."""
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


@lru_cache(maxsize=4)
def _transport(kind: str, outbox: str) -> Transport:
    if kind == "file":
        return FileTransport(Path(outbox))
    if kind == "console":
        return ConsoleTransport()
    if kind == "null":
        return NullTransport()
    msg = f"unknown notification transport {kind!r} (console, file or null)"
    raise ValueError(msg)


def get_transport(settings: Settings) -> Transport:
    """The configured transport."""
    return _transport(settings.otp_transport, settings.otp_outbox_dir)
