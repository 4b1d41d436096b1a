"""E-mail over SMTP with the standard library's :mod:`smtplib`.

One connection per message: connect (plain, or TLS from the first byte), upgrade with STARTTLS when asked
(refused, never downgraded, when the server does not offer it), log in when a user name is set, send, quit.
The Message-ID is derived from the job's idempotency key, so that a message sent twice (a worker that died
after the server took it, before the job was recorded done) carries the same Message-ID both times and a
receiver can drop the duplicate. Subject and body are UTF-8: the subject as an RFC 2047 encoded word, the
body base64-encoded unless it is plain ASCII. Any refusal (4xx or 5xx), a dropped connection or a timeout
raises :class:`SmtpError`, so the job is tried again later and, after its last try, dead-lettered with the
server's answer.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Literal

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.logging import get_logger
from simkeep.masking import mask_email
from simkeep.notifications.transports import OutgoingMessage, TransportError

log = get_logger("simkeep.notifications.smtp")


class SmtpError(TransportError):
    """The SMTP server refused the message, or could not be reached or finished with in time."""


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to hand e-mail over (from the ``SIMKEEP_SMTP_*`` settings)."""

    host: str
    port: int
    tls: Literal["starttls", "implicit", "off"]
    username: str
    password: str = field(repr=False)
    sender: str
    message_id_domain: str
    timeout: float
    ca_file: str

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        """The SMTP settings."""
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            sender=settings.smtp_from,
            message_id_domain=settings.smtp_message_id_domain,
            timeout=settings.smtp_timeout_seconds,
            ca_file=settings.smtp_ca_file,
        )

    @property
    def envelope_sender(self) -> str:
        """The address of the From header (MAIL FROM)."""
        return parseaddr(self.sender)[1]

    @property
    def domain(self) -> str:
        """The right-hand side of Message-IDs."""
        if self.message_id_domain:
            return self.message_id_domain
        _, _, domain = self.envelope_sender.rpartition("@")
        return domain or "simkeep.invalid"


def message_id(key: str | None, domain: str) -> str:
    """The Message-ID of a message: the same for the same idempotency key, a fresh one without a key."""
    if key is None:
        return make_msgid(idstring="simkeep", domain=domain)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<simkeep.{digest}@{domain}>"


def build_email(message: OutgoingMessage, config: SmtpConfig) -> EmailMessage:
    """The e-mail of ``message``: From, To, Subject, Date, Message-ID and a UTF-8 plain-text body."""
    email = EmailMessage()
    email["From"] = config.sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(utcnow())
    email["Message-ID"] = message_id(message.key, config.domain)
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: auto-responders do not answer it
    cte = "7bit" if message.body.isascii() else "base64"
    email.set_content(message.body, charset="utf-8", cte=cte)
    return email


class SmtpTransport:
    """Hands each message to an SMTP server (a relay or the operator's mail system)."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.ca_file or None)

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        if config.tls == "implicit":
            return smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout, context=self._tls_context()
            )
        return smtplib.SMTP(config.host, config.port, timeout=config.timeout)

    def send(self, message: OutgoingMessage) -> str:
        """Send ``message``; returns its Message-ID. Raises :class:`SmtpError` unless the server took it."""
        config = self.config
        email = build_email(message, config)
        where = f"{config.host}:{config.port}"
        try:
            with self._connect() as smtp:
                if config.tls == "starttls":
                    smtp.starttls(context=self._tls_context())
                if config.username:
                    smtp.login(config.username, config.password)
                smtp.send_message(email, from_addr=config.envelope_sender, to_addrs=[message.to])
        except smtplib.SMTPRecipientsRefused as exc:
            answers = "; ".join(_answer(code, text) for code, text in exc.recipients.values())
            raise SmtpError(_mask(f"{where} refused the recipient: {answers}", message.to)) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise SmtpError(f"{where}: {exc} Nothing was sent.") from exc
        except smtplib.SMTPAuthenticationError as exc:
            msg = (
                f"{where} refused the login of {config.username!r}: {_answer(exc.smtp_code, exc.smtp_error)}"
            )
            raise SmtpError(msg) from exc
        except smtplib.SMTPResponseException as exc:
            answer = _answer(exc.smtp_code, exc.smtp_error)
            raise SmtpError(_mask(f"{where} refused the message: {answer}", message.to)) from exc
        except (smtplib.SMTPServerDisconnected, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
                msg = f"{where} did not answer within {config.timeout:g} s"
            else:
                msg = f"{where} closed the connection before the message was accepted ({exc})"
            raise SmtpError(msg) from exc
        except (OSError, smtplib.SMTPException) as exc:
            msg = f"{where} could not be reached: {type(exc).__name__}: {exc}"
            raise SmtpError(msg) from exc
        message_id_ = str(email["Message-ID"])
        log.info("notification.sent", channel="email", template=message.template, transport="smtp")
        return message_id_


def _answer(code: int, text: bytes | str) -> str:
    """An SMTP reply as the server wrote it."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


def _mask(text: str, address: str) -> str:
    """``text`` with the recipient's address masked (a dead job's error is read by people)."""
    return text.replace(address, mask_email(address))
