"""SMS over SMPP 3.4 with ``smpplib``: the sending transport and the delivery-receipt listener.

Sending (:class:`SmppTransport`): one link per process, bound as transceiver and kept between messages
(checked with enquire_link after an idle spell, bound again when the SMSC has closed it). A text that fits
one SMS goes as one ``submit_sm``; a longer one as concatenated parts, each starting with a user data header
(UDH, 8-bit reference) and ``esm_class`` 0x40. Text the GSM 7-bit default alphabet can write (plain ASCII
but the backquote, and a few accented letters) is sent with ``data_coding`` 0, one septet per octet as SMPP
carries it: 160 characters in one SMS, 153 per part. Anything else (Chinese) is UCS-2, ``data_coding`` 8:
70 characters, 67 per part. A delivery receipt is requested on the last part, whose message id is what
:meth:`SmppTransport.send` returns and what the notification records: one receipt per message, matched
exactly on the indexed ``provider_message_id`` (the ids of every part are logged). A refused bind or
submit, a dropped link or a missing answer raises :class:`SmppError`, and the job is tried again.

Receipts: the SMSC may hand them to any link of the account bound to receive. The sending link reads what
is waiting after each submit and passes receipts to a callback (in the worker, a
:class:`~simkeep.notifications.receipts.ReceiptSpooler`). The listener (:func:`listen`, run by
``simkeep notifications receipts``) binds as receiver and writes each receipt as a job in its own
committed transaction *before* acknowledging it; when that fails it answers "temporary error" so that the
SMSC offers the receipt again. See :mod:`simkeep.notifications.receipts` for how a receipt is applied.
"""

from __future__ import annotations

import logging
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.logging import get_logger
from simkeep.notifications.receipts import STATES, Receipt, enqueue_receipt, parse_receipt_text, received_now
from simkeep.notifications.transports import OutgoingMessage, TransportError

log = get_logger("simkeep.notifications.smpp")

#: smpplib logs every PDU in hex at DEBUG, bodies (one-time codes) and bind passwords included: never shown.
WIRE_LOGGER = "simkeep.smpp.wire"

DATA_CODING_GSM7 = 0x00
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40
ESM_TYPE_MASK = 0x3C  # bits 2-5 of esm_class: the message type
ESM_TYPE_RECEIPT = 0x04  # SMSC delivery receipt
ESM_TYPE_INTERMEDIATE = 0x20  # intermediate delivery notification
ESME_ROK = 0x00
ESME_RINVBNDSTS = 0x04
ESME_RX_T_APPN = 0x64  # "ESME receiver temporary app error": the SMSC offers the PDU again later
REGISTERED_DELIVERY_RECEIPT = 0x01  # a receipt on final delivery and on failure

#: The GSM 03.38 default alphabet (its code is the index) and its extension table (after an escape, 0x1B).
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E}
GSM7_EXTENSION |= {"|": 0x40, "€": 0x65}
_GSM7_CODES = {char: bytes([code]) for code, char in enumerate(GSM7_BASIC) if char != "\x1b"}
_GSM7_CODES |= {char: bytes([0x1B, code]) for char, code in GSM7_EXTENSION.items()}

#: Room in one SMS, and in one part of a concatenated SMS (6 octets of UDH taken), per alphabet.
GSM7_SINGLE, GSM7_PART = 160, 153  # septets
UCS2_SINGLE, UCS2_PART = 140, 134  # octets
MAX_PARTS = 255


class SmppError(TransportError):
    """The SMSC refused the bind or the message, or the link failed or went silent."""


class SmppRefused(SmppError):
    """The SMSC answered with an error status."""

    def __init__(self, text: str, status: int) -> None:
        super().__init__(text)
        self.status = status


@dataclass(frozen=True)
class SmsEncoding:
    """A text as the octets of its SMS parts."""

    data_coding: int
    esm_class: int
    parts: tuple[bytes, ...]


def gsm7_units(text: str) -> list[bytes] | None:
    """Each character of ``text`` in the GSM 7-bit alphabet (one or two septets), or None if one has none."""
    units = []
    for char in text:
        code = _GSM7_CODES.get(char)
        if code is None:
            return None
        units.append(code)
    return units


def ucs2_units(text: str) -> list[bytes]:
    """Each character of ``text`` in UTF-16 big-endian (a character outside the BMP takes 4 octets)."""
    return [char.encode("utf-16-be") for char in text]


def _pack(units: list[bytes], room: int) -> list[bytes]:
    """Units joined into chunks of at most ``room`` octets, never splitting a character."""
    chunks: list[bytes] = []
    current = b""
    for unit in units:
        if len(current) + len(unit) > room:
            chunks.append(current)
            current = b""
        current += unit
    chunks.append(current)
    return chunks


def encode_sms(text: str, *, reference: int) -> SmsEncoding:
    """``text`` as SMS parts: GSM 7-bit when it can be, UCS-2 otherwise; concatenated with a UDH when long.

    ``reference`` (0-255) ties the parts of one message together on the handset.
    """
    gsm = gsm7_units(text)
    if gsm is not None:
        data_coding, units, single, part = DATA_CODING_GSM7, gsm, GSM7_SINGLE, GSM7_PART
    else:
        data_coding, units, single, part = DATA_CODING_UCS2, ucs2_units(text), UCS2_SINGLE, UCS2_PART
    if sum(len(u) for u in units) <= single:
        return SmsEncoding(data_coding, 0, (b"".join(units),))
    chunks = _pack(units, part)
    if len(chunks) > MAX_PARTS:
        msg = f"the text needs {len(chunks)} SMS parts; at most {MAX_PARTS} can be concatenated"
        raise ValueError(msg)
    total = len(chunks)
    parts = tuple(
        bytes([0x05, 0x00, 0x03, reference & 0xFF, total, number]) + chunk
        for number, chunk in enumerate(chunks, start=1)
    )
    return SmsEncoding(data_coding, ESM_CLASS_UDHI, parts)


@dataclass(frozen=True)
class SmppConfig:
    """Where and as whom to bind, and how to address messages (from the ``SIMKEEP_SMPP_*`` settings)."""

    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    dest_addr_ton: int
    dest_addr_npi: int
    timeout: float
    enquire_link_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SmppConfig:
        """The SMPP settings."""
        return cls(
            host=settings.smpp_host,
            port=settings.smpp_port,
            system_id=settings.smpp_system_id,
            password=settings.smpp_password,
            system_type=settings.smpp_system_type,
            source_addr=settings.smpp_source_addr,
            source_addr_ton=settings.smpp_source_addr_ton,
            source_addr_npi=settings.smpp_source_addr_npi,
            dest_addr_ton=settings.smpp_dest_addr_ton,
            dest_addr_npi=settings.smpp_dest_addr_npi,
            timeout=settings.smpp_timeout_seconds,
            enquire_link_seconds=settings.smpp_enquire_link_seconds,
        )

    @property
    def where(self) -> str:
        """The SMSC's address, for messages."""
        return f"SMSC {self.host}:{self.port}"


def _status_text(status: int) -> str:
    description = smpplib.consts.DESCRIPTIONS.get(status, "unknown status")
    return f"0x{status:08X} {description}"


def _text(value: object) -> str:
    """An SMPP string or octet string as text (receipts are ASCII)."""
    if isinstance(value, bytes):
        return value.rstrip(b"\0").decode("latin-1")
    return "" if value is None else str(value)


def receipt_of(pdu: Any) -> Receipt | None:
    """The delivery receipt a ``deliver_sm`` carries, or None when it is no (readable) receipt.

    The ``receipted_message_id`` and ``message_state`` TLVs are preferred; SMSCs that send only the text
    of SMPP 3.4 appendix B (``id:... stat:DELIVRD err:000``) are read too.
    """
    if int(pdu.esm_class or 0) & ESM_TYPE_MASK not in (ESM_TYPE_RECEIPT, ESM_TYPE_INTERMEDIATE):
        return None
    fields = parse_receipt_text(_text(pdu.short_message or getattr(pdu, "message_payload", None)))
    message_id = _text(getattr(pdu, "receipted_message_id", None)) or fields.get("id", "")
    number = getattr(pdu, "message_state", None)
    state = STATES.get(int(number), "") if number is not None else fields.get("stat", "").upper()
    if not message_id or not state:
        return None
    return Receipt(message_id=message_id, state=state, error=fields.get("err"), received_at=received_now())


ReceiptHandler = Callable[[Receipt], None]


class SmppLink:
    """One SMPP session with the SMSC: bind, submit and answer what the SMSC sends."""

    def __init__(
        self, config: SmppConfig, *, mode: Literal["transceiver", "receiver"], on_receipt: ReceiptHandler
    ) -> None:
        self.config = config
        self.mode = mode
        self.on_receipt = on_receipt
        self.client: Any = None
        self.last_used = 0.0

    @property
    def bound(self) -> bool:
        """Whether the session is open and bound."""
        return self.client is not None

    def open(self) -> None:
        """Connect and bind; raises :class:`SmppError` when the SMSC cannot be reached or refuses."""
        config = self.config
        logging.getLogger(WIRE_LOGGER).setLevel(logging.ERROR)
        client = smpplib.client.Client(
            config.host,
            config.port,
            timeout=config.timeout,
            logger_name=WIRE_LOGGER,
            allow_unknown_opt_params=True,
        )
        try:
            client.connect()
        except smpplib.exceptions.ConnectionError as exc:
            client.disconnect()
            raise SmppError(f"{config.where} could not be reached") from exc
        bind = client.bind_transceiver if self.mode == "transceiver" else client.bind_receiver
        try:
            bind(system_id=config.system_id, password=config.password, system_type=config.system_type)
        except smpplib.exceptions.PDUError as exc:
            client.disconnect()
            status = int(exc.args[1]) if len(exc.args) > 1 else -1
            msg = f"{config.where} refused to bind {config.system_id!r}: {_status_text(status)}"
            raise SmppRefused(msg, status) from exc
        except (smpplib.exceptions.ConnectionError, OSError) as exc:
            client.disconnect()
            raise SmppError(f"{config.where} closed the link or did not answer the bind") from exc
        self.client = client
        self.last_used = time.monotonic()
        log.info("sms.bound", smsc=config.where, mode=self.mode)

    def close(self) -> None:
        """Unbind, answering what the SMSC still sends before its answer (receipts), and disconnect.

        Never raises: a link that fails here is simply dropped.
        """
        if self.client is None:
            return
        try:
            unbind = smpplib.smpp.make_pdu("unbind", client=self.client)
            self._send(unbind)
            self._await(unbind.sequence, "unbind_resp")
        except SmppError:
            pass  # already dropped
        finally:
            self.drop()

    def drop(self) -> None:
        """Disconnect at once (after an error that leaves the session's state unknown)."""
        client, self.client = self.client, None
        if client is not None:
            client.disconnect()

    def _socket(self) -> socket.socket:
        sock: socket.socket = self.client._socket  # smpplib offers no other way to wait on its socket
        return sock

    def _read(self) -> Any:
        """The next PDU (one is known to be arriving); the link is dropped when it fails."""
        try:
            self._socket().settimeout(self.config.timeout)
            return self.client.read_pdu()
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
            self.drop()
            raise SmppError(f"{self.config.where} closed the link") from exc

    def _wait(self, timeout: float) -> bool:
        """Whether a PDU starts arriving within ``timeout`` seconds."""
        readable, _, _ = select.select([self._socket()], [], [], max(0.0, timeout))
        return bool(readable)

    def _await(self, sequence: int, command: str) -> Any:
        """Answer what the SMSC sends until the response ``command`` to ``sequence`` comes."""
        deadline = time.monotonic() + self.config.timeout
        while True:
            if not self._wait(deadline - time.monotonic()):
                self.drop()
                msg = f"{self.config.where} did not answer {command.removesuffix('_resp')} within "
                raise SmppError(msg + f"{self.config.timeout:g} s")
            pdu = self._read()
            if pdu.sequence == sequence and pdu.command in (command, "generic_nack"):
                self.last_used = time.monotonic()
                return pdu
            self._handle(pdu)

    def poll(self) -> int:
        """Handle every PDU already waiting (receipts, enquire_link); returns how many there were."""
        handled = 0
        while self.client is not None and self._wait(0):
            self._handle(self._read())
            handled += 1
        return handled

    def read_one(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for one PDU and handle it; False when none came."""
        if not self._wait(timeout):
            return False
        self._handle(self._read())
        return True

    def enquire(self) -> None:
        """Check the link with enquire_link; raises :class:`SmppError` when it is dead."""
        pdu = smpplib.smpp.make_pdu("enquire_link", client=self.client)
        self._send(pdu)
        self._await(pdu.sequence, "enquire_link_resp")

    def submit(self, **fields: Any) -> str:
        """Submit one SMS (``submit_sm``) and return the SMSC's message id."""
        pdu = smpplib.smpp.make_pdu("submit_sm", client=self.client, **fields)
        self._send(pdu)
        resp = self._await(pdu.sequence, "submit_sm_resp")
        if resp.status != ESME_ROK:
            if resp.status == ESME_RINVBNDSTS:
                self.drop()
            msg = f"{self.config.where} refused the message: {_status_text(int(resp.status))}"
            raise SmppRefused(msg, int(resp.status))
        return _text(resp.message_id)

    def _send(self, pdu: Any) -> None:
        try:
            self.client.send_pdu(pdu)
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
            self.drop()
            raise SmppError(f"{self.config.where} closed the link") from exc

    def _respond(self, command: str, sequence: int, status: int = ESME_ROK) -> None:
        resp = smpplib.smpp.make_pdu(command, client=self.client, status=status)
        resp.sequence = sequence
        self._send(resp)

    def _handle(self, pdu: Any) -> None:
        """Answer a PDU the SMSC sent of its own accord."""
        if pdu.command == "deliver_sm":
            self._respond("deliver_sm_resp", pdu.sequence, self._take_receipt(pdu))
        elif pdu.command == "enquire_link":
            self._respond("enquire_link_resp", pdu.sequence)
        elif pdu.command == "unbind":
            self._respond("unbind_resp", pdu.sequence)
            self.drop()
        elif pdu.command != "enquire_link_resp":
            log.info("sms.pdu_ignored", command=pdu.command, status=pdu.status)

    def _take_receipt(self, pdu: Any) -> int:
        """Hand a receipt on; the status to answer it with."""
        receipt = receipt_of(pdu)
        if receipt is None:
            kind = "receipt_unreadable" if int(pdu.esm_class or 0) & ESM_TYPE_MASK else "mo_ignored"
            log.warning(
                f"sms.{kind}", smsc=self.config.where
            )  # answered OK: offered again it would not change
            return ESME_ROK
        try:
            self.on_receipt(receipt)
        except Exception as exc:  # whatever kept it from being stored, the SMSC must offer it again
            log.warning("sms.receipt_deferred", message_id=receipt.message_id, error=type(exc).__name__)
            return ESME_RX_T_APPN
        return ESME_ROK


class SmppTransport:
    """Sends SMS over one transceiver link, kept bound between messages (thread-safe)."""

    def __init__(self, config: SmppConfig, *, on_receipt: ReceiptHandler) -> None:
        self.config = config
        self.on_receipt = on_receipt
        self.link = SmppLink(config, mode="transceiver", on_receipt=on_receipt)
        self._lock = threading.Lock()
        self._reference = secrets.randbelow(256)

    def _ready(self) -> SmppLink:
        """The bound link: bound now if it was not, checked if it idled, bound again if the SMSC closed it."""
        link = self.link
        if link.bound:
            try:
                link.poll()
                if link.bound and time.monotonic() - link.last_used > self.config.enquire_link_seconds:
                    link.enquire()
            except SmppError:
                link.drop()
        if not link.bound:
            link.open()
        return link

    def send(self, message: OutgoingMessage) -> str:
        """Submit ``message`` (in parts when long); returns the message id of its last part."""
        config = self.config
        with self._lock:
            self._reference = (self._reference + 1) % 256
            encoded = encode_sms(message.body, reference=self._reference)
            link = self._ready()
            ids = []
            for number, short_message in enumerate(encoded.parts, start=1):
                last = number == len(encoded.parts)
                ids.append(
                    link.submit(
                        source_addr=config.source_addr,
                        source_addr_ton=config.source_addr_ton,
                        source_addr_npi=config.source_addr_npi,
                        destination_addr=message.to.removeprefix("+"),
                        dest_addr_ton=config.dest_addr_ton,
                        dest_addr_npi=config.dest_addr_npi,
                        esm_class=encoded.esm_class,
                        data_coding=encoded.data_coding,
                        registered_delivery=REGISTERED_DELIVERY_RECEIPT if last else 0,
                        short_message=short_message,
                    )
                )
            try:
                link.poll()
            except (
                SmppError
            ) as exc:  # the message is accepted: a link lost afterwards is bound again next time
                log.warning("sms.link_lost", smsc=config.where, error=str(exc))
        log.info(
            "notification.sent", channel="sms", template=message.template, transport="smpp", message_ids=ids
        )
        return ids[-1]

    def close(self) -> None:
        """Unbind, then write the receipts still in hand."""
        with self._lock:
            self.link.close()
        close = getattr(self.on_receipt, "close", None)
        if callable(close):
            close()


@dataclass
class ListenReport:
    """What a receipt listener did."""

    receipts: int = 0
    links: int = 0


def receipt_writer(sessions: Callable[[], Session]) -> ReceiptHandler:
    """Writes each receipt as a job in a transaction of its own, committed before the SMSC gets its answer."""

    def write(receipt: Receipt) -> None:
        with sessions() as session, session.begin():
            enqueue_receipt(session, receipt)

    return write


def listen(
    config: SmppConfig,
    sessions: Callable[[], Session],
    *,
    exit_when_idle: bool = False,
    idle_seconds: float = 5.0,
    should_stop: Callable[[], bool] = lambda: False,
) -> ListenReport:
    """Receive delivery receipts on a receiver link until stopped, writing each as a job.

    A lost link is bound again after a pause (1 s, doubling up to a minute). With ``exit_when_idle`` it
    returns once nothing arrived for ``idle_seconds``, and a failure to bind raises :class:`SmppError`.
    """
    report = ListenReport()
    write = receipt_writer(sessions)

    def handle(receipt: Receipt) -> None:
        write(receipt)
        report.receipts += 1

    link = SmppLink(config, mode="receiver", on_receipt=handle)
    pause = 1.0
    try:
        while not should_stop():
            try:
                if not link.bound:
                    link.open()
                    report.links += 1
                    pause = 1.0
                _serve(
                    link, config, exit_when_idle=exit_when_idle, idle_seconds=idle_seconds, stop=should_stop
                )
                if exit_when_idle:
                    break
            except SmppError as exc:
                link.drop()
                if exit_when_idle:
                    raise
                log.warning("sms.receipts_link_lost", error=str(exc), retry_in_s=pause)
                _sleep(pause, should_stop)
                pause = min(60.0, pause * 2)
    finally:
        link.close()
    return report


def _serve(
    link: SmppLink, config: SmppConfig, *, exit_when_idle: bool, idle_seconds: float, stop: Callable[[], bool]
) -> None:
    """Handle what the SMSC sends until stopped, idle (when asked) or the link is lost (raises)."""
    quiet_since = last_traffic = time.monotonic()
    while not stop() and link.bound:
        if link.read_one(timeout=min(1.0, idle_seconds) if exit_when_idle else 1.0):
            quiet_since = last_traffic = time.monotonic()
            continue
        now = time.monotonic()
        if exit_when_idle and now - quiet_since >= idle_seconds:
            return
        if now - last_traffic >= config.enquire_link_seconds:
            link.enquire()
            last_traffic = time.monotonic()
    if not link.bound and not stop():
        raise SmppError(f"{config.where} ended the session")


def _sleep(seconds: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.2, deadline - time.monotonic()))
