"""``simkeep network``: the HLR seen from simkeep (reconciliation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.auth.actors import CLI
from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_session
from simkeep.config import Settings
from simkeep.network.adapter import NetworkError, SimAuth

app = typer.Typer(help="The HLR: compare it with simkeep's record and repair it.", no_args_is_help=True)


def _auth_loader(session: Session, settings: Settings) -> Callable[[str], SimAuth | None]:
    """Opens a SIM's sealed authentication data, for entries that must be created again."""

    def auth_for(imsi: str) -> SimAuth | None:
        from simkeep.identity.vault import get_vault
        from simkeep.models import Sim
        from simkeep.sims.secrets import open_auth

        sim = session.scalar(select(Sim).where(Sim.imsi == imsi))
        if sim is None or sim.auth_sealed is None or sim.auth_algorithm is None:
            return None
        return open_auth(
            get_vault(settings), iccid=sim.iccid, algorithm=sim.auth_algorithm, sealed=sim.auth_sealed
        )

    return auth_for


@app.command("reconcile")
def reconcile_command(
    fix: Annotated[
        bool, typer.Option("--fix", help="Repair the HLR toward simkeep's record (audited).")
    ] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """Compare simkeep's lines and SIMs with the HLR. Exit 0: they agree; 1: differences (left after --fix,
    or repairs refused); 2: the HLR could not be read."""
    from simkeep.network.adapter import network_for
    from simkeep.network.reconcile import reconcile

    settings = load_settings()
    with open_session(settings) as session:
        network = network_for(session, settings)
        commit_each = None if network.transactional else session.commit
        try:
            report = reconcile(
                session,
                network,
                fix=fix,
                actor=CLI.label,
                after_repair=commit_each,
                auth_for=_auth_loader(session, settings),
            )
        except NetworkError as exc:
            session.commit()  # repairs done before the HLR went away stay audited
            raise fail(
                f"the HLR could not be read or changed: {exc.message}",
                as_json=as_json,
                code=exc.code,
                exit_code=2,
            ) from None
        session.commit()
    lines = [f"{report.checked_sims} SIMs checked against {report.hlr_entries} HLR entries"]
    if report.in_flight:
        lines.append(f"{report.in_flight} IMSIs left out: a pending network operation is changing them")
    lines += [f"  {d.describe()}" for d in report.differences]
    if fix:
        lines += [
            f"  repaired: {r.step} IMSI {r.imsi}"
            if r.error is None
            else f"  refused: {r.step} IMSI {r.imsi}: {r.error}"
            for r in report.repairs
        ]
        lines += [f"  still differs: {d.describe()}" for d in report.remaining]
    if not report.differences:
        lines.append("simkeep and the HLR agree")
    elif fix and not report.remaining:
        lines.append(f"{len(report.differences)} differences repaired")
    else:
        lines.append(f"{len(report.remaining)} differences")
    emit(report.as_dict(), as_json=as_json, text="\n".join(lines))
    if report.remaining:
        raise typer.Exit(1)


@app.command("ops")
def ops_command(
    status: Annotated[
        str | None, typer.Option("--status", help="Only operations in this state: pending, done or failed.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="How many, newest first.")] = 50,
    as_json: bool = JSON_OPTION,
) -> None:
    """List the network operations (changes simkeep made or is making in the HLR), newest first."""
    from simkeep.masking import mask_msisdn
    from simkeep.models import NetworkOpStatus
    from simkeep.network.operations import list_operations

    settings = load_settings()
    try:
        wanted = NetworkOpStatus(status) if status is not None else None
    except ValueError:
        raise fail("--status is pending, done or failed.", as_json=as_json, code="INVALID_STATUS") from None
    with open_session(settings) as session:
        rows = [
            {
                "id": op.id,
                "kind": str(op.kind),
                "status": str(op.status),
                "line_id": op.line_id,
                "order_id": op.order_id,
                "msisdn": mask_msisdn(op.msisdn) if op.msisdn else None,
                "step": op.step,
                "attempts": op.attempts,
                "last_error": op.last_error,
                "not_before": op.not_before.isoformat() if op.not_before else None,
                "created_at": op.created_at.isoformat(),
            }
            for op in list_operations(session, status=wanted, limit=limit)
        ]
    text = "\n".join(
        f"{r['id']:>6} {r['kind']:<6} {r['status']:<8} line {r['line_id']} step {r['step']} "
        f"tries {r['attempts']} {r['last_error'] or ''}".rstrip()
        for r in rows
    )
    emit(rows, as_json=as_json, text=text or "no network operations")


@app.command("retry")
def retry_command(
    op_id: Annotated[int, typer.Argument(help="The failed operation's id (see `simkeep network ops`).")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Queue a failed operation again, after its cause was fixed (audited)."""
    from simkeep.errors import DomainError
    from simkeep.network.operations import retry

    settings = load_settings()
    with open_session(settings) as session:
        try:
            op = retry(session, op_id=op_id, actor=CLI.label)
        except DomainError as exc:
            session.rollback()
            raise fail(exc.message, as_json=as_json, code=exc.code) from None
        session.commit()
        emit({"id": op.id, "status": str(op.status)}, as_json=as_json, text=f"operation {op.id} queued again")
