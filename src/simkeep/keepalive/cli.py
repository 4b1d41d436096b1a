"""``simkeep keepalive`` (activity import, sweep, undo) and ``simkeep numbers`` (the number pool)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_session

app = typer.Typer(
    help="Keeping numbers alive: activity, the daily sweep, undoing a recycling.", no_args_is_help=True
)
numbers_app = typer.Typer(help="The pool of recycled numbers.", no_args_is_help=True)


def _when(value: str | None, *, as_json: bool) -> datetime | None:
    if value is None:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise fail(
            "--now: not an ISO 8601 timestamp", as_json=as_json, code="INVALID_INPUT", exit_code=2
        ) from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


@app.command("import-activity")
def import_activity_command(
    file: Annotated[
        Path, typer.Argument(help="CSV (event_id,msisdn,kind,occurred_at) or JSON lines (.jsonl).")
    ],
    as_json: bool = JSON_OPTION,
) -> None:
    """Import usage events; exit 1 on rejected lines, 2 on a bad file."""
    from simkeep.keepalive.importer import import_activity
    from simkeep.sims.cli import run_import

    run_import(import_activity, file, as_json=as_json, noun="events")


@app.command("sweep")
def sweep_command(
    now: Annotated[
        str | None, typer.Option("--now", help="Sweep as of this ISO 8601 time (default: now).")
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Send the reminders due, recycle the lines past their deadline, release aged numbers."""
    from simkeep.keepalive.service import sweep

    when = _when(now, as_json=as_json)
    settings = load_settings()
    with open_session(settings) as session:
        counts = sweep(session, now=when)
    c = counts.to_dict()
    emit(
        c,
        as_json=as_json,
        text=f"checked {c['checked']:,}, reminded {c['reminded']:,}, recycled {c['recycled']:,}, "
        f"skipped {c['skipped']:,}, computed {c['computed']:,}, released {c['released']:,}",
    )


@app.command("restore")
def restore_command(
    msisdn: Annotated[str, typer.Argument(help="The recycled number (E.164).")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Undo a recycling within the plan's grace (refused after it, or once the number was reassigned)."""
    from simkeep.auth.actors import CLI
    from simkeep.errors import DomainError
    from simkeep.keepalive.service import restore_line

    settings = load_settings()
    with open_session(settings) as session:
        try:
            line = restore_line(session, settings, msisdn=msisdn, actor=CLI)
        except DomainError as exc:
            session.rollback()
            raise fail(exc.message, as_json=as_json, code=exc.code) from None
        session.commit()
        emit(
            {"msisdn": line.msisdn, "status": str(line.status)},
            as_json=as_json,
            text=f"{line.msisdn} restored",
        )


@numbers_app.command("assign")
def assign_command(
    msisdn: Annotated[str, typer.Argument(help="An available number of the pool.")],
    subscriber: Annotated[int, typer.Option("--subscriber", help="The new holder's subscriber id.")],
    plan: Annotated[str, typer.Option("--plan", help="The plan code of the new line.")],
    as_json: bool = JSON_OPTION,
) -> None:
    """Give an available number to a subscriber as a new line."""
    from simkeep.auth.actors import CLI
    from simkeep.errors import DomainError
    from simkeep.keepalive.service import assign_number

    settings = load_settings()
    with open_session(settings) as session:
        try:
            line = assign_number(
                session, msisdn=msisdn, subscriber_id=subscriber, plan_code=plan, actor=CLI, settings=settings
            )
        except DomainError as exc:
            session.rollback()
            raise fail(exc.message, as_json=as_json, code=exc.code) from None
        session.commit()
        emit({"msisdn": line.msisdn, "line_id": line.id}, as_json=as_json, text=f"{line.msisdn} assigned")
