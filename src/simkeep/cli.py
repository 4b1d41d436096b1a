"""The ``simkeep`` command."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_engine

#: Sub-commands whose modules are imported only when one of them runs (or its own help is asked for):
#: name -> (module, attribute: a Typer app or a command function, the short help ``simkeep --help`` shows).
#: Importing them all would cost every command about a second (FastAPI, the face matcher, HTTP clients ...).
#: tests/test_cli_lazy.py holds these help texts to the modules' own.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "simkeep.demo.cli",
        "demo",
        "Load the demo dataset: stores, SIM stock, staff, holders and orders in many states (idempotent).",
    ),
    "worker": (
        "simkeep.jobs.cli",
        "worker",
        "Carry out queued and scheduled jobs until stopped (SIGTERM or Ctrl-C finish the current batch).",
    ),
    "audit": ("simkeep.audit.cli", "app", "The hash-chained audit log."),
    "clients": ("simkeep.camara.cli", "app", "Relying parties of the CAMARA APIs (OAuth2 clients)."),
    "esim": ("simkeep.esim.cli", "app", "eSIM profiles ordered from the SM-DP+ (ES2+)."),
    "evidence": ("simkeep.identity.cli", "app", "The evidence vault: document photos and selfies."),
    "jobs": ("simkeep.jobs.cli", "app", "The background job queue."),
    "keepalive": (
        "simkeep.keepalive.cli",
        "app",
        "Keeping numbers alive: activity, the daily sweep, undoing a recycling.",
    ),
    "lines": ("simkeep.lines.cli", "app", "Lines (phone numbers) and their holders."),
    "network": ("simkeep.network.cli", "app", "The HLR: compare it with simkeep's record and repair it."),
    "numbers": ("simkeep.keepalive.cli", "numbers_app", "The pool of recycled numbers."),
    "notifications": (
        "simkeep.notifications.cli",
        "app",
        "Notifications: SMS delivery receipts and test messages.",
    ),
    "orders": ("simkeep.replacements.cli", "app", "Replacement orders (补卡) and their fees."),
    "sims": ("simkeep.sims.cli", "app", "SIM cards and SIM stock."),
    "staff": ("simkeep.staff.cli", "app", "Stores and staff accounts."),
}


class LazyCommand(TyperCommand):
    """Stands for a sub-command in listings (help, completion) until it is run: name and short help only."""

    def __init__(self, name: str, module: str, attribute: str, help_text: str) -> None:
        super().__init__(name, help=help_text, short_help=help_text)
        self.module = module
        self.attribute = attribute

    def is_group(self) -> bool:
        """Whether it is a group (a Typer app, named apart) rather than a command function (named as it)."""
        return self.attribute != self.name

    def load(self) -> Any:
        """The real command: the module is imported now."""
        target = getattr(importlib.import_module(self.module), self.attribute)
        if isinstance(target, typer.Typer):
            command: Any = typer.main.get_group(target)
        else:
            holder = typer.Typer(add_completion=False)
            holder.command(self.name)(target)
            command = typer.main.get_command(holder)
        command.name = self.name
        return command


class LazyGroup(TyperGroup):
    """The ``simkeep`` group: the sub-commands of :data:`LAZY_COMMANDS` are imported when they are run.

    Listings (``simkeep --help``, shell completion) show their name and short help without importing them;
    anything else that asks for one (running it, ``simkeep sims --help``) gets the real command.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        eager = dict(self.commands)
        lazy = {name: LazyCommand(name, *spec) for name, spec in LAZY_COMMANDS.items()}
        # The order Typer lists them in: single commands first, then groups.
        self.commands = {
            **{n: c for n, c in eager.items() if not isinstance(c, TyperGroup)},
            **{n: c for n, c in lazy.items() if not c.is_group()},
            **{n: c for n, c in eager.items() if isinstance(c, TyperGroup)},
            **{n: c for n, c in lazy.items() if c.is_group()},
        }
        self._listing = False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:  # noqa: ARG002 - click's signature
        """The command ``cmd_name``, imported now unless only its name and help are wanted."""
        command = self.commands.get(cmd_name)
        if isinstance(command, LazyCommand) and not self._listing:
            command = self.commands[cmd_name] = command.load()
        return command

    @contextmanager
    def _names_only(self) -> Iterator[None]:
        listing, self._listing = self._listing, True
        try:
            yield
        finally:
            self._listing = listing

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The group's help, listing the sub-commands without importing them."""
        with self._names_only():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        """Completions of a sub-command's name, without importing the sub-commands."""
        with self._names_only():
            return super().shell_complete(ctx, incomplete)


app = typer.Typer(
    cls=LazyGroup, help="simkeep: number-keeping SIM lines for mobile operators.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate the database schema to the newest revision."""
    from simkeep.db import migrate

    settings = load_settings()
    with open_engine(settings) as engine:
        migrate.upgrade(engine, revision)
        typer.echo(f"database at revision {migrate.current_revision(engine)}")


@db_app.command("check")
def db_check(as_json: bool = JSON_OPTION) -> None:
    """Exit non-zero when the models and the migrated database differ (like ``alembic check``)."""
    from simkeep.db import migrate

    settings = load_settings()
    with open_engine(settings) as engine:
        if migrate.current_revision(engine) != migrate.head_revision():
            raise fail(
                "the database is not at the newest revision; run `simkeep db upgrade`",
                as_json=as_json,
                code="DB_NOT_UPGRADED",
            )
        diffs = [repr(d) for d in migrate.drift(engine)]
    if diffs:
        raise fail("models and migrations differ", as_json=as_json, code="SCHEMA_DRIFT", differences=diffs)
    emit({"ok": True}, as_json=as_json, text="models and migrations agree")


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, help="Worker processes (each with its own database connections)."),
    upgrade: bool = typer.Option(True, help="Run `db upgrade` first."),
) -> None:
    """Serve the web API (OpenAPI docs at /docs)."""
    import uvicorn

    from simkeep.camara.protocol import CamaraHttpProtocol
    from simkeep.db import migrate

    settings = load_settings()
    if upgrade:
        with open_engine(settings) as engine:
            migrate.upgrade(engine)
    # Several workers share a SQLite file too: WAL lets them read at once and writes wait their turn.
    typer.echo(f"simkeep listening on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(
        "simkeep.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        http=CamaraHttpProtocol,  # uvicorn's httptools protocol, answering the CAMARA hot path itself
        timeout_keep_alive=settings.http_keepalive_seconds,
    )


def main() -> None:
    """Entry point of the ``simkeep`` console script."""
    app()
