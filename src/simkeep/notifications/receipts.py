"""Delivery receipts of SMS: from the SMSC, through the job queue, onto the notification.

An SMSC reports the fate of a message it accepted in a delivery receipt (``deliver_sm`` with the receipt
esm_class) naming the message id it gave at submission. A receipt reaches simkeep on any link bound to
receive: the receipt listener (``simkeep notifications receipts``) or the link the worker sends on. Either
way it is written as a ``notification.receipt`` job (:func:`enqueue_receipt`), keyed by message id and state
so that a receipt delivered twice is recorded once, and the worker applies it (:func:`apply_receipt`): the
notification whose ``provider_message_id`` is that id becomes ``delivered`` (with ``delivered_at``) or
``failed`` (with the SMSC's state and error code in ``error``). The first final receipt wins; intermediate
states (ENROUTE, ACCEPTD, UNKNOWN) change nothing.

A receipt can arrive before the transaction that recorded its message id has committed (the worker sends a
batch in one transaction; a fast SMSC answers within it). So a receipt that matches no notification is tried
again, with backoff, for about five minutes, and then dropped with a ``notification.receipt_unmatched``
warning (a receipt for a message another system sent on the same account matches nothing either).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from simkeep.db.base import utcnow
from simkeep.jobs.registry import JobContext, job
from simkeep.jobs.service import enqueue
from simkeep.logging import get_logger
from simkeep.models import Notification

log = get_logger("simkeep.notifications.receipts")

RECEIPT = "notification.receipt"
#: Tries of a receipt job: with a 10 s backoff doubled each time, an unmatched receipt is retried ~5 minutes.
RECEIPT_ATTEMPTS = 6

#: The states of SMPP 3.4 (message_state TLV numbers, and their 7-letter names in the receipt text).
STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
DELIVERED = frozenset({"DELIVRD"})
FAILED = frozenset({"EXPIRED", "DELETED", "UNDELIV", "REJECTD"})
FINAL_STATUSES = ("delivered", "failed")

Outcome = Literal["recorded", "unmatched", "ignored"]


class ReceiptNotMatched(LookupError):
    """No SMS notification carries the receipt's message id (yet)."""


@dataclass(frozen=True)
class Receipt:
    """What an SMSC said about one message it had accepted."""

    message_id: str
    state: str  # DELIVRD, UNDELIV, ... (see STATES)
    error: str | None
    received_at: datetime

    @property
    def outcome(self) -> Literal["delivered", "failed"] | None:
        """``delivered`` or ``failed`` for a final state, None for an intermediate one."""
        if self.state in DELIVERED:
            return "delivered"
        if self.state in FAILED:
            return "failed"
        return None

    def payload(self) -> dict[str, Any]:
        """The receipt as a job payload."""
        return {
            "message_id": self.message_id,
            "state": self.state,
            "error": self.error,
            "received_at": self.received_at.isoformat(),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Receipt:
        """The receipt of a job payload."""
        return cls(
            message_id=str(payload["message_id"]),
            state=str(payload["state"]),
            error=payload.get("error"),
            received_at=datetime.fromisoformat(str(payload["received_at"])),
        )


def parse_receipt_text(text: str) -> dict[str, str]:
    """The ``key:value`` fields of a receipt's text (SMPP 3.4 appendix B), keys in lower case.

    ``id:0123 sub:001 dlvrd:001 submit date:2611301200 done date:2611301201 stat:DELIVRD err:000 text:...``
    """
    fields: dict[str, str] = {}
    end = text.lower().find(" text:")
    head = text if end < 0 else text[:end]
    for name in ("id", "sub", "dlvrd", "submit date", "done date", "stat", "err"):
        marker = f"{name}:"
        at = head.lower().find(marker)
        if at < 0:
            continue
        value = head[at + len(marker) :].split(" ", 1)[0]
        fields[name] = value.strip()
    return fields


def enqueue_receipt(session: Session, receipt: Receipt) -> bool:
    """Write ``receipt`` as a job in the caller's transaction; False when it is known already."""
    return enqueue(
        session,
        kind=RECEIPT,
        key=f"sms-receipt:{receipt.message_id}:{receipt.state}",
        payload=receipt.payload(),
        max_attempts=RECEIPT_ATTEMPTS,
    )


def apply_receipt(session: Session, receipt: Receipt) -> Outcome:
    """Record ``receipt`` on the SMS notification whose provider message id it names."""
    row = session.scalars(
        select(Notification)
        .where(Notification.provider_message_id == receipt.message_id, Notification.channel == "sms")
        .order_by(Notification.id.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if row is None:
        return "unmatched"
    outcome = receipt.outcome
    if outcome is None or row.status in FINAL_STATUSES:
        log.info("notification.receipt_ignored", notification=row.id, state=receipt.state, status=row.status)
        return "ignored"
    if outcome == "delivered":
        row.status, row.delivered_at, row.error = "delivered", receipt.received_at, None
    else:
        row.status, row.error = "failed", f"SMSC receipt: {receipt.state} err:{receipt.error or '-'}"
    session.flush()
    log.info("notification.receipt", notification=row.id, status=row.status, state=receipt.state)
    return "recorded"


@job(RECEIPT, max_attempts=RECEIPT_ATTEMPTS, backoff_s=10.0)
def record_receipt(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Apply a receipt; one that matches nothing yet is tried again until its last try, then dropped."""
    receipt = Receipt.from_payload(payload)
    if apply_receipt(ctx.session, receipt) != "unmatched":
        return
    if ctx.attempt < RECEIPT_ATTEMPTS:
        msg = f"no SMS notification has provider message id {receipt.message_id!r} (yet)"
        raise ReceiptNotMatched(msg)
    log.warning("notification.receipt_unmatched", message_id=receipt.message_id, state=receipt.state)


class ReceiptSpooler:
    """Writes receipts that arrive on a sending link as jobs, from a thread with a connection of its own.

    The link that receives them is used inside a job's (or a request's) transaction, which may hold the very
    rows, or on SQLite the write lock, that recording needs: writing from that thread would wait on itself.
    This thread waits for that transaction instead. A receipt is acknowledged to the SMSC once it is handed
    here; one still queued when the process is killed (not stopped: :meth:`close` writes them first) is lost,
    and its notification stays ``sent``.
    """

    def __init__(self, database_url: str, *, busy_timeout_ms: int = 30_000, retry_limit: int = 20) -> None:
        self.database_url = database_url
        self.busy_timeout_ms = busy_timeout_ms
        self.retry_limit = retry_limit
        self._queue: queue.Queue[Receipt | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, receipt: Receipt) -> None:
        """Take ``receipt`` to be written."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="simkeep-receipts", daemon=True)
                self._thread.start()
        self._queue.put(receipt)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued (waiting at most ``timeout`` seconds), then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        from simkeep.db.engine import make_engine, make_session_factory

        engine = make_engine(self.database_url, busy_timeout_ms=self.busy_timeout_ms, pool_size=1)
        sessions = make_session_factory(engine)
        try:
            while (receipt := self._queue.get()) is not None:
                self._write(sessions, receipt)
        finally:
            engine.dispose()

    def _write(self, sessions: Any, receipt: Receipt) -> None:
        for attempt in range(1, self.retry_limit + 1):
            try:
                with sessions() as session, session.begin():
                    enqueue_receipt(session, receipt)
            except SQLAlchemyError as exc:
                log.warning("notification.receipt_spool_retry", attempt=attempt, error=type(exc).__name__)
                time.sleep(min(30.0, 0.5 * 2**attempt))
            else:
                return
        log.error("notification.receipt_lost", message_id=receipt.message_id, state=receipt.state)


def received_now() -> datetime:
    """When a receipt reached simkeep (the SMSC's own dates carry no time zone)."""
    return utcnow()
