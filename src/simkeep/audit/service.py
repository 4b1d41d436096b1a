"""Appending to the audit log and verifying its hash chain.

Each entry's hash covers its own fields and the previous entry's hash, so any edit, deletion or insertion
in the middle breaks the chain from that point. Appends are serialised: on PostgreSQL by a transaction-level
advisory lock, on SQLite by the immediate write transaction every simkeep transaction takes. The unique
constraint on ``prev_hash`` refuses a fork even if that serialisation were bypassed.

A transaction's entries are linked and written together when it commits (or when it reads the audit log
through this module), so the serialising lock is held for the commit only, not from the transaction's first
audited step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, event, select, text
from sqlalchemy.orm import Session, SessionTransaction

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


def _hash_of(entry: AuditEntry | Row[Any], prev_hash: str) -> str:
    """The hash of an entry (an object or a row read back) following ``prev_hash``."""
    return compute_hash(
        prev_hash=prev_hash,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        subject_type=entry.subject_type,
        subject_id=entry.subject_id,
        reason=entry.reason,
        data=entry.data,
    )


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
    """Append one entry to the chain in the caller's transaction.

    The entry is linked (given its predecessor's hash and its own) and written when the transaction
    commits, or earlier when this module is asked for entries in the same transaction (:func:`link_pending`;
    code reading ``audit_log`` itself calls it first). A savepoint rolled back takes the entries recorded in
    it with it; a transaction rolled back, all of them.
    """
    # Microsecond precision survives both databases, so the hash recomputes identically after a read.
    entry = AuditEntry(
        at=utcnow(),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        reason=reason,
        data=json.loads(_canonical(data or {})),
    )
    owner = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_PENDING, []).append((owner, entry))
    return entry


_PENDING = "simkeep.audit.pending"
#: The statements of every audited commit, built once (each commit would otherwise build them again).
_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
_HEAD = select(AuditEntry.__table__.c.entry_hash).order_by(AuditEntry.__table__.c.id.desc()).limit(1)


def link_pending(session: Session) -> None:
    """Link the entries this transaction recorded to the chain's head and add them to the session.

    Appends are serialised from here to the commit: on PostgreSQL by the advisory lock taken here, on SQLite
    by the write lock the transaction already holds. Linking at the commit rather than at each
    :func:`record` keeps that lock for the commit only: every transaction that audits something waits
    for it, so one held from a request's first audited step to its end made replacements queue behind
    each other on PostgreSQL.
    """
    if not session.info.get(_PENDING):
        return
    session.flush()  # the transaction's other writes first: the lock is for the entries alone
    pending: list[tuple[Any, AuditEntry]] = session.info.pop(_PENDING, [])
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_LOCK, {"k": _ADVISORY_LOCK_KEY})
    head = connection.execute(_HEAD).scalar()
    prev_hash = head or GENESIS_HASH
    for _owner, entry in pending:
        entry.prev_hash = prev_hash
        entry.entry_hash = prev_hash = _hash_of(entry, prev_hash)
    # Added in the order recorded; the unit of work inserts them in that order, so ids follow the chain.
    session.add_all([entry for _owner, entry in pending])
    session.flush()
    savepoint = session.get_nested_transaction()
    if savepoint is not None:  # written inside a savepoint: a rollback of it must give them back
        session.info.setdefault(_LINKED, []).extend((owner, entry, savepoint) for owner, entry in pending)


_LINKED = "simkeep.audit.linked_in_savepoint"


@event.listens_for(Session, "before_commit")
def _link_before_commit(session: Session) -> None:
    if session.get_nested_transaction() is None:  # the transaction's commit, not a savepoint's release
        link_pending(session)


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """Entries recorded in the rolled-back transaction (or a savepoint inside it) are not appended. Entries
    recorded before a savepoint but written inside it (a read of the log there linked them) are pending
    again: the rollback took their rows, not their recording."""
    restored: list[tuple[Any, AuditEntry]] = []
    still: list[tuple[Any, AuditEntry, Any]] = []
    for owner, entry, savepoint in session.info.pop(_LINKED, []):
        if not _within(savepoint, previous_transaction):
            still.append((owner, entry, savepoint))
        elif not _within(owner, previous_transaction):
            entry.id = None  # transient again: a new row at the next link
            entry.prev_hash = entry.entry_hash = None
            restored.append((owner, entry))
    if still:
        session.info[_LINKED] = still
    pending = restored + session.info.pop(_PENDING, [])
    kept = [(owner, entry) for owner, entry in pending if not _within(owner, previous_transaction)]
    if kept:
        session.info[_PENDING] = kept


def _within(owner: SessionTransaction | None, transaction: SessionTransaction) -> bool:
    while owner is not None:
        if owner is transaction:
            return True
        owner = owner.parent
    return transaction.parent is None  # a rollback of the whole transaction drops every entry


@event.listens_for(Session, "after_transaction_end")
def _forget_at_the_end(session: Session, transaction: SessionTransaction) -> None:
    """Nothing recorded in a transaction outlives it (a session closed without committing, say)."""
    if transaction.parent is None and transaction.nested is False:
        session.info.pop(_PENDING, None)
        session.info.pop(_LINKED, None)


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
    link_pending(session)
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
        if _hash_of(entry, entry.prev_hash) != entry.entry_hash:
            return ChainReport(count, entry.id, "its contents do not match its hash")
        expected_prev = entry.entry_hash
    return ChainReport(count, None, None)


def entries_for(
    session: Session, *, subject_type: str, subject_id: str | int, limit: int = 200
) -> list[AuditEntry]:
    """The newest audit entries about one subject."""
    link_pending(session)
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.subject_type == subject_type, AuditEntry.subject_id == str(subject_id))
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
    )
