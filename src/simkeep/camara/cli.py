"""``simkeep clients``: relying parties of the CAMARA APIs (banks, apps)."""

from __future__ import annotations

from typing import Any

import typer

from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_session
from simkeep.errors import DomainError
from simkeep.models import RelyingParty

app = typer.Typer(help="Relying parties of the CAMARA APIs (OAuth2 clients).", no_args_is_help=True)


def _row(client: RelyingParty) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "scopes": client.scopes.split(),
        "active": client.active,
        "requests_per_second": client.requests_per_second,
        "daily_quota": client.daily_quota,
        "created_at": client.created_at.isoformat(),
        "secret_rotated_at": client.secret_rotated_at.isoformat(),
    }


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Who the client is, e.g. the bank's name."),
    scope: list[str] = typer.Option(  # noqa: B008 - typer's documented way to declare a repeated option
        ...,
        "--scope",
        help="A scope the client may ask for (repeat): number-recycling:check, sim-swap:check, ...",
    ),
    rps: int = typer.Option(100, "--rps", help="Requests per second allowed (shared by the API workers)."),
    daily_quota: int = typer.Option(1_000_000, "--daily-quota", help="Answered queries allowed per UTC day."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a client; its secret is printed this once and never stored."""
    from simkeep.camara import clients  # with FastAPI's error types: only for these commands

    settings = load_settings()
    with open_session(settings) as session:
        try:
            issued = clients.create_client(
                session, settings, name=name, scopes=scope, requests_per_second=rps, daily_quota=daily_quota
            )
        except DomainError as error:
            raise fail(error.message, as_json=as_json, code=error.code) from error
        session.commit()
        result = {**_row(issued.client), "client_secret": issued.secret}
    emit(
        result,
        as_json=as_json,
        text=(
            f"client_id     {result['client_id']}\nclient_secret {issued.secret}\n"
            "The secret is shown once: store it now."
        ),
    )


@app.command("list")
def list_(as_json: bool = JSON_OPTION) -> None:
    """Every client with its scopes, limits and state (never a secret)."""
    from simkeep.camara import clients  # with FastAPI's error types: only for these commands

    settings = load_settings()
    with open_session(settings) as session:
        rows = [_row(c) for c in clients.list_clients(session)]
    text = "\n".join(
        f"{r['client_id']}  {'active  ' if r['active'] else 'disabled'}  {r['name']}  "
        f"[{' '.join(r['scopes'])}]  {r['requests_per_second']}/s  {r['daily_quota']}/day"
        for r in rows
    )
    emit({"clients": rows}, as_json=as_json, text=text or "no clients")


@app.command("disable")
def disable(
    client_id: str = typer.Argument(..., help="The client's id."), as_json: bool = JSON_OPTION
) -> None:
    """Refuse the client's credentials and its tokens from now on."""
    from simkeep.camara import clients  # with FastAPI's error types: only for these commands

    settings = load_settings()
    with open_session(settings) as session:
        try:
            client = clients.disable_client(session, client_id=client_id)
        except DomainError as error:
            raise fail(error.message, as_json=as_json, code=error.code) from error
        session.commit()
        result = _row(client)
    emit(result, as_json=as_json, text=f"client {client_id} disabled")


@app.command("rotate-secret")
def rotate_secret(
    client_id: str = typer.Argument(..., help="The client's id."), as_json: bool = JSON_OPTION
) -> None:
    """Issue a new secret (printed once); the old secret and the tokens issued with it stop working."""
    from simkeep.camara import clients  # with FastAPI's error types: only for these commands

    settings = load_settings()
    with open_session(settings) as session:
        try:
            issued = clients.rotate_secret(session, settings, client_id=client_id)
        except DomainError as error:
            raise fail(error.message, as_json=as_json, code=error.code) from error
        session.commit()
        result = {**_row(issued.client), "client_secret": issued.secret}
    emit(
        result,
        as_json=as_json,
        text=f"client_secret {issued.secret}\nThe secret is shown once: store it now.",
    )
