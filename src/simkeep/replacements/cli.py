"""`simkeep replacements` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="replacements", no_args_is_help=True)
