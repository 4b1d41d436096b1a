"""The ``simkeep`` command."""

from __future__ import annotations

import typer

from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_engine

app = typer.Typer(help="simkeep: number-keeping SIM lines for mobile operators.", no_args_is_help=True)
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
    )


def _register_subcommands() -> None:
    from simkeep.audit.cli import app as audit_app
    from simkeep.camara.cli import app as clients_app
    from simkeep.demo.cli import demo
    from simkeep.esim.cli import app as esim_app
    from simkeep.identity.cli import app as evidence_app
    from simkeep.jobs.cli import app as jobs_app
    from simkeep.jobs.cli import worker
    from simkeep.keepalive.cli import app as keepalive_app
    from simkeep.keepalive.cli import numbers_app
    from simkeep.lines.cli import app as lines_app
    from simkeep.network.cli import app as network_app
    from simkeep.notifications.cli import app as notifications_app
    from simkeep.replacements.cli import app as orders_app
    from simkeep.sims.cli import app as sims_app
    from simkeep.staff.cli import app as staff_app

    app.add_typer(audit_app, name="audit")
    app.add_typer(clients_app, name="clients")
    app.add_typer(esim_app, name="esim")
    app.add_typer(evidence_app, name="evidence")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(keepalive_app, name="keepalive")
    app.add_typer(lines_app, name="lines")
    app.add_typer(network_app, name="network")
    app.add_typer(numbers_app, name="numbers")
    app.add_typer(notifications_app, name="notifications")
    app.add_typer(orders_app, name="orders")
    app.add_typer(sims_app, name="sims")
    app.add_typer(staff_app, name="staff")
    app.command("demo")(demo)
    app.command("worker")(worker)


_register_subcommands()


def main() -> None:
    """Entry point of the ``simkeep`` console script."""
    app()
