"""``simkeep audit``: check the audit log."""

from __future__ import annotations

import typer

from simkeep.audit.service import verify_chain
from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_session

app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@app.command("verify")
def verify(as_json: bool = JSON_OPTION) -> None:
    """Walk the hash chain; exit 1 and name the first broken entry if any."""
    settings = load_settings()
    with open_session(settings) as session:
        report = verify_chain(session)
    if not report.ok:
        raise fail(
            f"audit entry {report.first_broken_id} is broken: {report.problem}",
            as_json=as_json,
            code="AUDIT_CHAIN_BROKEN",
            entry_id=report.first_broken_id,
            entries_checked=report.entries,
        )
    emit(
        {"ok": True, "entries": report.entries},
        as_json=as_json,
        text=f"audit chain intact: {report.entries} entries",
    )
