"""``simkeep sims``: SIM cards and SIM stock."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_engine

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from simkeep.config import Settings
    from simkeep.sims.importer import ImportResult

app = typer.Typer(help="SIM cards and SIM stock.", no_args_is_help=True)

SHOWN_ERRORS = 20
Importer = Callable[..., "ImportResult"]


@app.command("import")
def import_stock(
    file: Annotated[
        Path, typer.Argument(help="CSV: iccid,imsi,kind,location,store,batch[,auth_algorithm,k,opc].")
    ],
    as_json: bool = JSON_OPTION,
) -> None:
    """Import SIM stock; exit 1 when rows were rejected, 2 when the file cannot be read."""
    from simkeep.sims.importer import import_sims

    run_import(import_sims, file, as_json=as_json, noun="SIMs")


def run_import(importer: Importer, path: Path, *, as_json: bool, noun: str) -> None:
    """Run a bulk import as a command: progress on a terminal, then a summary; exit 0, 1 or 2."""
    from simkeep.sims.importer import ImportFileUnreadable

    settings = load_settings()
    with open_engine(settings) as engine:
        try:
            if as_json or not sys.stdout.isatty():
                result = importer(engine, settings, path)
            else:
                result = _with_progress(importer, engine, settings, path)
        except ImportFileUnreadable as exc:
            raise fail(exc.message, as_json=as_json, code=exc.code, exit_code=2) from None
    emit(result.to_dict(), as_json=as_json, text=summary(result, noun))
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _with_progress(importer: Importer, engine: Engine, settings: Settings, path: Path) -> ImportResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        task = progress.add_task(f"importing {path.name}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=max(total, done))

        return importer(engine, settings, path, on_progress=advance)


def summary(result: ImportResult, noun: str) -> str:
    """The result for a person: counts, then the first errors with their line numbers."""
    text = [
        f"{result.rows:,} rows in {result.seconds:.1f} s: {result.imported:,} {noun} imported, "
        f"{result.already_present:,} already present, {result.rejected:,} rejected"
    ]
    if result.created_plans:
        text.append(
            "new plans created (name = code, 180 days of inactivity): " + ", ".join(result.created_plans)
        )
    errors = sorted(result.errors, key=lambda e: e.line)
    text += [f"  line {e.line}: {e.field}: {e.reason}" for e in errors[:SHOWN_ERRORS]]
    if result.rejected > SHOWN_ERRORS:
        text.append(f"  ... and {result.rejected - SHOWN_ERRORS:,} more (--json lists up to 1000)")
    return "\n".join(text)
