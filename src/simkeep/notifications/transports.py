"""Transports that deliver a message: the console and a file outbox are the embedded defaults.

SMTP and SMPP transports, behind the durable job queue, come with the notifications issue; they implement
the same :class:`Transport` protocol.
"""

from __future__ import annotations

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


class Transport(Protocol):
    """Delivers messages; raises on failure."""

    def send(self, message: OutgoingMessage) -> None:
        """Deliver ``message`` or raise."""


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
        """Write the message atomically (temp file, then rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(message), ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(tmp, path)


def read_outbox(directory: Path) -> list[OutgoingMessage]:
    """The messages in an outbox directory, oldest first."""
    if not directory.exists():
        return []
    return [
        OutgoingMessage(**json.loads(p.read_text(encoding="utf-8"))) for p in sorted(directory.glob("*.json"))
    ]


@lru_cache(maxsize=4)
def _transport(kind: str, outbox: str) -> Transport:
    if kind == "file":
        return FileTransport(Path(outbox))
    if kind == "console":
        return ConsoleTransport()
    msg = f"unknown notification transport {kind!r} (console or file)"
    raise ValueError(msg)


def get_transport(settings: Settings) -> Transport:
    """The configured transport."""
    return _transport(settings.otp_transport, settings.otp_outbox_dir)
