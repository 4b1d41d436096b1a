"""Appending to the audit log and verifying its hash chain.

Each entry's hash covers its own fields and the previous entry's hash, so any edit, deletion or insertion
in the middle breaks the chain from that point. Appends are serialised: on PostgreSQL by a transaction-level
advisory lock, on SQLite by the immediate write transaction every simkeep transaction takes. The unique
constraint on ``prev_hash`` refuses a fork even if that serialisation were bypassed.

Within one transaction the chain's head cannot move under the appender (the lock is held to its end), so
the second and later entries of a transaction link to the entry the transaction wrote last without asking
the database again, unless a savepoint rolled that entry back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, inspect, select, text
from sqlalchemy.orm import Session

from simkeep.db.base import utcnow
from simkeep.models import AuditEntry

GENESIS_HASH = "0" * 64
_ADVISORY_LOCK_KEY = 0x5149_4B45_4550  # "simkeep" audit chain


def _canonical(entry_fields: dict[str, Any]) -> bytes:
    return json.dumps(
        entry_fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def compute_hash(
    *,
    prev_hash: str,
    at: datetime,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    reason: str,
    data: dict[str, Any],
) -> str:
    """The SHA-256 of an entry's fields and its predecessor's hash."""
    fields = {
        "prev": prev_hash,
        "at": at.isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "reason": reason,
        "data": data,
    }
    return hashlib.sha256(_canonical(fields)).hexdigest()


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | int,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the chain inside the caller's transaction (written, and given its id, at the
    session's next flush)."""
    prev_hash = _head_in_transaction(session)
    if prev_hash is None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
        prev = session.scalar(select(AuditEntry.entry_hash).order_by(AuditEntry.id.desc()).limit(1))
        prev_hash = prev or GENESIS_HASH
    # Microsecond precision survives both databases, so the hash recomputes identically after a read.
    at = utcnow()
    payload = json.loads(_canonical(data or {}))
    entry = AuditEntry(
        at=at,
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        reason=reason,
        data=payload,
        prev_hash=prev_hash,
        entry_hash=compute_hash(
            prev_hash=prev_hash,
            at=at,
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=str(subject_id),
            reason=reason,
            data=payload,
        ),
    )
    # Not flushed here: the transaction's entries go in with its next flush, in the order they were added
    # (the unit of work keeps it), so a request that records several transitions writes them together.
    session.add(entry)
    session.info[_HEAD] = (session.get_transaction(), entry)
    return entry


_HEAD = "simkeep.audit.head"


def _head_in_transaction(session: Session) -> str | None:
    """The hash of the last entry this transaction appended, if it still stands; else None (ask the
    database). A new transaction, or a savepoint rolled back over the entry (which leaves it transient),
    makes it unknown."""
    held = session.info.get(_HEAD)
    if held is None:
        return None
    transaction, entry = held
    state = inspect(entry)
    if (
        transaction is None
        or transaction is not session.get_transaction()
        or not (state.pending or state.persistent)
    ):
        del session.info[_HEAD]
        return None
    return str(entry.entry_hash)


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the chain."""

    entries: int
    first_broken_id: int | None
    problem: str | None

    @property
    def ok(self) -> bool:
        """Whether every entry checked out."""
        return self.first_broken_id is None


def _walk(session: Session, batch: int = 5000) -> Iterator[Row[Any]]:
    """Every entry in id order, read in batches as plain rows (nothing accumulates in the session)."""
    table = AuditEntry.__table__
    last_id = 0
    while True:
        rows = session.execute(
            select(table).where(table.c.id > last_id).order_by(table.c.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def verify_chain(session: Session) -> ChainReport:
    """Walk the whole chain; report the first entry whose links or hash do not check out."""
    expected_prev = GENESIS_HASH
    count = 0
    for entry in _walk(session):
        count += 1
        if entry.prev_hash != expected_prev:
            return ChainReport(count, entry.id, "its prev_hash does not match the entry before it")
        recomputed = compute_hash(
            prev_hash=entry.prev_hash,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            subject_type=entry.subject_type,
            subject_id=entry.subject_id,
            reason=entry.reason,
            data=entry.data,
        )
        if recomputed != entry.entry_hash:
            return ChainReport(count, entry.id, "its contents do not match its hash")
        expected_prev = entry.entry_hash
    return ChainReport(count, None, None)


def entries_for(
    session: Session, *, subject_type: str, subject_id: str | int, limit: int = 200
) -> list[AuditEntry]:
    """The newest audit entries about one subject."""
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.subject_type == subject_type, AuditEntry.subject_id == str(subject_id))
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
    )
