"""`simkeep sims` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="sims", no_args_is_help=True)
