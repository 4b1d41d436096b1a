"""``simkeep evidence``: the evidence vault for operators (run ``purge`` from cron until jobs arrive)."""

from __future__ import annotations

import typer

from simkeep.cli_support import JSON_OPTION, emit, load_settings, open_session

app = typer.Typer(help="The evidence vault: document photos and selfies.", no_args_is_help=True)


@app.command("purge")
def purge(as_json: bool = JSON_OPTION) -> None:
    """Delete the photos of orders closed past the retention period, and uploads never used; verdicts stay."""
    from simkeep.identity import evidence  # the image stack (numpy): only for this command

    settings = load_settings()
    with open_session(settings) as session:
        report = evidence.purge(session, settings)
        session.commit()
    total = report.closed_orders + report.orphans
    emit(
        {"purged": total, "closed_orders": report.closed_orders, "orphans": report.orphans},
        as_json=as_json,
        text=(
            f"purged {total} evidence files: {report.closed_orders} of orders closed over "
            f"{settings.evidence_retention_days} days ago, {report.orphans} unused uploads"
        ),
    )
