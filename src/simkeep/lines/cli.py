"""`simkeep lines` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="lines", no_args_is_help=True)
