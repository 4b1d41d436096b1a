"""Durable network operations: every change simkeep makes in the HLR, written down before it is made.

A change in simkeep that needs the network (a SIM activated, a SIM barred after a loss report, barred no
more after a reinstatement, a replaced or recycled SIM removed) writes a :class:`NetworkOperation` row, and
a ``network.apply`` job, in the same transaction as the change that causes it. The operation's steps are
idempotent adapter calls (:mod:`simkeep.network.adapter`), so whoever runs it - the request right after
its commit, for speed, or the worker, after a crash or an HLR outage - may run it again from the first step
and ends in the same state.

With the embedded HLR (``adapter.transactional``) the steps run at once in the caller's transaction, and
simkeep and "the network" commit or roll back together. With an external HLR (osmo-hlr) they run after the
commit: :func:`run_after_commit` runs the ones the request scheduled; the job is the safety net.

A move (a SIM change) is finished only when the network has done it: the order waits in ``activating`` and
:func:`simkeep.replacements.activation.complete_activation` records the SIM change afterwards. If the HLR
refuses a step (not an outage: a refusal that no retry heals), the number is put back on the old SIM and the
order goes back to the state it was activated from, for staff to look at (``simkeep network ops``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import DomainError, NotFound
from simkeep.jobs.registry import JobContext, job
from simkeep.jobs.service import enqueue
from simkeep.models import NetworkOperation, NetworkOpKind, NetworkOpStatus, Sim
from simkeep.network.adapter import NetworkAdapter, NetworkError, NetworkUnavailable, SimAuth, network_for

log = structlog.get_logger(__name__)

JOB_KIND = "network.apply"
#: How long the job waits before it runs an operation the request is about to run itself.
INLINE_HEAD_START = timedelta(seconds=10)
MAX_ATTEMPTS = 40
_PENDING = "simkeep.network.pending_ops"


class OperationWaiting(NetworkUnavailable):
    """An earlier operation on the same line has not run yet; this one is tried again later."""

    code = "NETWORK_OPERATION_WAITING"


class OperationNotRetryable(DomainError):
    """Only a failed operation can be retried."""

    code = "NETWORK_OPERATION_NOT_RETRYABLE"


def schedule(
    session: Session,
    settings: Settings | None,
    *,
    kind: NetworkOpKind,
    line_id: int | None,
    order_id: int | None = None,
    msisdn: str | None = None,
    old_imsi: str | None = None,
    new_imsi: str | None = None,
    not_before: datetime | None = None,
    actor: str = "system",
) -> NetworkOperation:
    """Write the operation in the caller's transaction; with the embedded HLR, also carry it out there.

    Raises :class:`NetworkError` only for the embedded HLR (whose refusal must roll the caller back).
    """
    op = NetworkOperation(
        kind=kind,
        status=NetworkOpStatus.PENDING,
        line_id=line_id,
        order_id=order_id,
        msisdn=msisdn,
        old_imsi=old_imsi,
        new_imsi=new_imsi,
        not_before=not_before,
        created_by=actor,
    )
    adapter = network_for(session, settings)
    inline = adapter.transactional and not_before is None
    if inline:
        op.attempts = 1
    session.add(op)
    session.flush()
    if inline:
        _perform(session, settings, adapter, op)
        # A number moved for an order is recorded by the caller (activation), in this same transaction.
        _finish(session, settings, op, complete=False)
        return op
    run_at = not_before or (utcnow() + INLINE_HEAD_START)
    enqueue(
        session,
        kind=JOB_KIND,
        key=f"network-op:{op.id}",
        payload={"op": op.id},
        run_at=run_at,
        max_attempts=MAX_ATTEMPTS,
    )
    if not_before is None:
        session.info.setdefault(_PENDING, []).append(op.id)
    return op


def is_transactional(session: Session, settings: Settings | None) -> bool:
    """Whether the configured network changes ride on the database transaction (the embedded HLR)."""
    return network_for(session, settings).transactional


def commit_and_apply(session: Session, settings: Settings) -> list[NetworkOperation]:
    """Commit the caller's transaction, then carry out the network operations it scheduled."""
    session.commit()
    return run_after_commit(session, settings)


def run_after_commit(session: Session, settings: Settings) -> list[NetworkOperation]:
    """Run the operations this session scheduled, each in a transaction of its own; call after commit.

    An HLR outage leaves an operation pending (the job retries it); nothing is raised.
    """
    ids: list[int] = session.info.pop(_PENDING, [])
    done: list[NetworkOperation] = []
    for op_id in ids:
        try:
            op = run(session, settings, op_id=op_id)
            session.commit()
        except NetworkUnavailable:
            session.commit()  # keeps the attempt count and the error
            continue
        except Exception:
            session.rollback()
            log.exception("network.operation_crashed", op_id=op_id)
            continue
        if op is not None:
            done.append(op)
    return done


def run(session: Session, settings: Settings | None, *, op_id: int) -> NetworkOperation | None:
    """Carry out a pending operation; returns it (done or failed), or None if it is not pending.

    Raises :class:`NetworkUnavailable` when the HLR cannot be reached (the operation stays pending with the
    error noted, in this transaction).
    """
    op = session.get(NetworkOperation, op_id, with_for_update=True, populate_existing=True)
    if op is None or op.status != NetworkOpStatus.PENDING:
        return None
    if _earlier_pending(session, op):
        raise OperationWaiting(f"operation {op.id} waits for an earlier one on the same line")
    adapter = network_for(session, settings)
    op.attempts += 1
    try:
        _perform(session, settings, adapter, op)
    except NetworkUnavailable as exc:
        op.last_error = str(exc)[:500]
        session.flush()
        raise
    except NetworkError as exc:
        _fail(session, adapter, op, reason=str(exc))
        return op
    _finish(session, settings, op)
    return op


def _earlier_pending(session: Session, op: NetworkOperation) -> bool:
    """Whether an earlier operation on the same line is still to run (a line's changes run in order)."""
    if op.line_id is None:
        return False
    now = utcnow()
    earlier = session.scalar(
        select(NetworkOperation.id)
        .where(
            NetworkOperation.line_id == op.line_id,
            NetworkOperation.id < op.id,
            NetworkOperation.status == NetworkOpStatus.PENDING,
            (NetworkOperation.not_before.is_(None)) | (NetworkOperation.not_before <= now),
        )
        .limit(1)
    )
    return earlier is not None


def _auth_of(session: Session, settings: Settings | None, imsi: str) -> SimAuth | None:
    sim = session.scalar(select(Sim).where(Sim.imsi == imsi))
    if sim is None or sim.auth_sealed is None or sim.auth_algorithm is None or settings is None:
        return None
    from simkeep.identity.vault import get_vault
    from simkeep.sims.secrets import open_auth

    return open_auth(
        get_vault(settings), iccid=sim.iccid, algorithm=sim.auth_algorithm, sealed=sim.auth_sealed
    )


def steps(
    session: Session, settings: Settings | None, adapter: NetworkAdapter, op: NetworkOperation
) -> list[tuple[str, Callable[[], None]]]:
    """The operation's idempotent steps, in order, by name."""
    if op.kind == NetworkOpKind.MOVE:
        assert op.new_imsi is not None
        assert op.msisdn is not None
        new, old, msisdn = op.new_imsi, op.old_imsi, op.msisdn
        out: list[tuple[str, Callable[[], None]]] = [
            ("provision_new", lambda: adapter.provision(new, _auth_of(session, settings, new)))
        ]
        if old is not None and old != new:
            out += [
                ("bar_old", lambda: _bar_if_present(adapter, old)),
                ("unbind_old", lambda: adapter.unbind_number(old)),
            ]
        out += [
            ("bind_new", lambda: adapter.bind_number(new, msisdn)),
            ("unbar_new", lambda: adapter.set_barred(new, barred=False)),
        ]
        return out
    imsi = op.old_imsi
    assert imsi is not None
    if op.kind == NetworkOpKind.BAR:
        return [("bar", lambda: adapter.set_barred(imsi, barred=True))]
    if op.kind == NetworkOpKind.UNBAR:
        return [("unbar", lambda: adapter.set_barred(imsi, barred=False))]
    return [
        ("bar", lambda: _bar_if_present(adapter, imsi)),
        ("unbind", lambda: adapter.unbind_number(imsi)),
        ("remove", lambda: adapter.remove(imsi)),
    ]


def _bar_if_present(adapter: NetworkAdapter, imsi: str) -> None:
    if adapter.lookup(imsi) is not None:
        adapter.set_barred(imsi, barred=True)


def _perform(
    session: Session, settings: Settings | None, adapter: NetworkAdapter, op: NetworkOperation
) -> None:
    # ``op.step`` is written once, after the last step that went through: it is durable only with the
    # transaction anyway, and set per step it made the embedded HLR's next query flush it each time.
    done: int | None = None
    try:
        for index, (_name, step) in enumerate(steps(session, settings, adapter, op), start=1):
            step()
            done = index
    finally:
        if done is not None:
            op.step = done
        if not adapter.transactional:
            close = getattr(adapter, "close", None)
            if close is not None:
                close()


def _finish(
    session: Session, settings: Settings | None, op: NetworkOperation, *, complete: bool = True
) -> None:
    op.status = NetworkOpStatus.DONE
    op.done_at = utcnow()
    op.last_error = None
    session.flush()
    if complete and op.kind == NetworkOpKind.MOVE and op.order_id is not None:
        from simkeep.replacements.activation import complete_activation

        complete_activation(session, settings, op=op)


def _fail(session: Session, adapter: NetworkAdapter, op: NetworkOperation, *, reason: str) -> None:
    """A refusal no retry heals: put a half-moved number back on the old SIM and hand it to staff."""
    op.status = NetworkOpStatus.FAILED
    op.last_error = reason[:500]
    restored = None
    if op.kind == NetworkOpKind.MOVE and op.old_imsi is not None and op.msisdn is not None:
        restored = _restore_old(adapter, op)
    session.flush()
    record(
        session,
        actor="system:network",
        action="network.operation_failed",
        subject_type="network_operation",
        subject_id=op.id,
        reason=reason[:200],
        data={"kind": str(op.kind), "step": op.step, "restored_old_sim": restored},
    )
    if op.kind == NetworkOpKind.MOVE and op.order_id is not None:
        from simkeep.replacements.activation import abandon_activation

        abandon_activation(session, op=op)


def _restore_old(adapter: NetworkAdapter, op: NetworkOperation) -> bool:
    assert op.old_imsi is not None
    assert op.msisdn is not None
    try:
        if op.new_imsi is not None and op.new_imsi != op.old_imsi:
            entry = adapter.lookup(op.new_imsi)
            if entry is not None and entry.msisdn == op.msisdn:
                adapter.unbind_number(op.new_imsi)
            if entry is not None:
                adapter.set_barred(op.new_imsi, barred=True)
        adapter.bind_number(op.old_imsi, op.msisdn)
        adapter.set_barred(op.old_imsi, barred=False)
    except NetworkError as exc:
        log.warning("network.restore_failed", op_id=op.id, error=str(exc))
        return False
    return True


def retry(session: Session, *, op_id: int, actor: str) -> NetworkOperation:
    """Put a failed operation back to pending and queue it (staff, after fixing the cause)."""
    op = session.get(NetworkOperation, op_id, with_for_update=True)
    if op is None:
        raise NotFound("No such network operation.", code="NETWORK_OPERATION_NOT_FOUND")
    if op.status != NetworkOpStatus.FAILED:
        raise OperationNotRetryable(f"Operation {op.id} is {op.status}; only a failed one can be retried.")
    if op.kind == NetworkOpKind.MOVE and op.order_id is not None:
        raise OperationNotRetryable(
            "A failed SIM move was undone and its order went back; activate the order again instead."
        )
    op.status = NetworkOpStatus.PENDING
    op.step = 0
    session.flush()
    enqueue(
        session,
        kind=JOB_KIND,
        key=f"network-op:{op.id}:retry:{op.attempts}",
        payload={"op": op.id},
        max_attempts=MAX_ATTEMPTS,
    )
    record(
        session, actor=actor, action="network.operation_retried", subject_type="network_operation",
        subject_id=op.id, data={"kind": str(op.kind)},
    )  # fmt: skip
    return op


def list_operations(
    session: Session, *, status: NetworkOpStatus | None = None, limit: int = 100
) -> list[NetworkOperation]:
    """Operations, newest first, optionally of one status."""
    stmt = select(NetworkOperation).order_by(NetworkOperation.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(NetworkOperation.status == status)
    return list(session.scalars(stmt))


def pending_for_line(session: Session, line_id: int) -> list[NetworkOperation]:
    """The line's operations not yet done (reconcile leaves such lines alone)."""
    return list(
        session.scalars(
            select(NetworkOperation).where(
                NetworkOperation.line_id == line_id, NetworkOperation.status == NetworkOpStatus.PENDING
            )
        )
    )


@job(JOB_KIND, max_attempts=MAX_ATTEMPTS, backoff_s=2.0)
def apply_operation(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Carry out one network operation; an HLR outage raises, so the job is tried again later."""
    op_id = int(payload["op"])
    try:
        run(ctx.session, ctx.settings, op_id=op_id)
    except NetworkUnavailable as exc:
        if ctx.attempt >= MAX_ATTEMPTS:
            op = ctx.session.get(NetworkOperation, op_id)
            if op is not None:
                adapter = network_for(ctx.session, ctx.settings)
                _fail(ctx.session, adapter, op, reason=f"gave up after {ctx.attempt} tries: {exc}")
                return
        raise
