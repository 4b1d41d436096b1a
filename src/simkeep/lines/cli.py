"""``simkeep lines``: phone numbers and their holders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simkeep.cli_support import JSON_OPTION

app = typer.Typer(help="Lines (phone numbers) and their holders.", no_args_is_help=True)


@app.command("import")
def import_lines_command(
    file: Annotated[
        Path, typer.Argument(help="CSV exported from the previous system (see docs/imports.md).")
    ],
    as_json: bool = JSON_OPTION,
) -> None:
    """Migrate lines with their holders, SIMs and SIM history; exit 1 on rejected rows, 2 on a bad file."""
    from simkeep.lines.importer import import_lines
    from simkeep.sims.cli import run_import

    run_import(import_lines, file, as_json=as_json, noun="lines")
