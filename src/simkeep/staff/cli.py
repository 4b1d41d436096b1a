"""``simkeep staff``: stores and staff accounts.

Passwords are never command-line arguments (they would land in the shell history and the process list):
they are read from one line of standard input with ``--password-stdin``, or prompted for twice, hidden.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from sqlalchemy.orm import Session

from simkeep.auth.actors import CLI
from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_session
from simkeep.errors import DomainError
from simkeep.models import StaffUser, Store
from simkeep.staff import service

app = typer.Typer(help="Stores and staff accounts.", no_args_is_help=True)
stores_app = typer.Typer(help="Stores (营业厅).", no_args_is_help=True)
users_app = typer.Typer(help="Staff users: clerks, reviewers, admins.", no_args_is_help=True)
app.add_typer(stores_app, name="stores")
app.add_typer(users_app, name="users")

PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="Read the password from one line of standard input instead of prompting."
)


@contextmanager
def _session(as_json: bool) -> Iterator[Session]:
    """A session for one command; a domain error rolls everything back and ends the command with it."""
    settings = load_settings()
    with open_session(settings) as session:
        try:
            yield session
        except DomainError as exc:
            session.rollback()
            raise fail(exc.message, as_json=as_json, code=exc.code, **exc.details) from exc


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))


def _store_view(store: Store) -> dict[str, Any]:
    return {
        "code": store.code,
        "name": store.name,
        "region": store.region,
        "address": store.address,
        "created_at": store.created_at.isoformat(),
    }


def _user_view(user: StaffUser, store: Store | None) -> dict[str, Any]:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "role": str(user.role),
        "store": store.code if store else None,
        "active": user.active,
        "created_at": user.created_at.isoformat(),
    }


@stores_app.command("add")
def stores_add(
    code: str = typer.Argument(..., help="Short code staff type, e.g. BJ-XIDAN."),
    name: str = typer.Option(..., "--name", help="The store's name, e.g. 北京西单营业厅."),
    region: str = typer.Option(..., "--region", help="Province or region, e.g. Beijing."),
    address: str = typer.Option("", "--address", help="Street address."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a store."""
    with _session(as_json) as session:
        store = service.add_store(session, actor=CLI, code=code, name=name, region=region, address=address)
        session.commit()
        emit(_store_view(store), as_json=as_json, text=f"store {store.code} added: {store.name}")


@stores_app.command("list")
def stores_list(as_json: bool = JSON_OPTION) -> None:
    """List the stores."""
    with _session(as_json) as session:
        stores = service.list_stores(session)
    lines = [f"{s.code:<16} {s.region:<12} {s.name}" for s in stores] or ["no stores"]
    emit([_store_view(s) for s in stores], as_json=as_json, text="\n".join(lines))


@users_app.command("create")
def users_create(  # noqa: PLR0917 - Typer maps each option to a parameter
    username: str = typer.Argument(..., help="Sign-in name, e.g. clerk.bj."),
    role: str = typer.Option(..., "--role", help="clerk, reviewer or admin."),
    store: str | None = typer.Option(None, "--store", help="Store code (required for clerks)."),
    name: str | None = typer.Option(None, "--name", help="Display name (default: the user name)."),
    password_stdin: bool = PASSWORD_STDIN,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a staff user; the password is read from stdin or prompted for twice."""
    with _session(as_json) as session:
        # Refuse a bad name, role or store before asking for a password.
        service.check_new_user(session, username=username, role=role, store_code=store, display_name=name)
        password = _read_password(password_stdin)
        user = service.create_user(
            session,
            actor=CLI,
            username=username,
            role=role,
            password=password,
            store_code=store,
            display_name=name,
        )
        session.commit()
        user_store = session.get(Store, user.store_id) if user.store_id else None
        where = f" at {user_store.code}" if user_store else ""
        emit(
            _user_view(user, user_store),
            as_json=as_json,
            text=f"staff user {user.username} created ({user.role}{where})",
        )


@users_app.command("list")
def users_list(as_json: bool = JSON_OPTION) -> None:
    """List the staff users."""
    with _session(as_json) as session:
        rows = service.list_users(session)
    lines = [
        f"{u.username:<20} {u.role!s:<9} {(s.code if s else '-'):<16} "
        f"{'active' if u.active else 'disabled':<9} {u.display_name}"
        for u, s in rows
    ] or ["no staff users"]
    emit([_user_view(u, s) for u, s in rows], as_json=as_json, text="\n".join(lines))


@users_app.command("disable")
def users_disable(
    username: str = typer.Argument(..., help="The user to disable."), as_json: bool = JSON_OPTION
) -> None:
    """Disable a staff user: they can no longer sign in, and their open sessions end."""
    with _session(as_json) as session:
        user, changed = service.disable_user(session, actor=CLI, username=username)
        session.commit()
        text = f"staff user {user.username} disabled" if changed else f"{user.username} was already disabled"
        result = {"username": user.username, "active": user.active, "changed": changed}
        emit(result, as_json=as_json, text=text)


@users_app.command("reset-password")
def users_reset_password(
    username: str = typer.Argument(..., help="The user whose password to set."),
    password_stdin: bool = PASSWORD_STDIN,
    as_json: bool = JSON_OPTION,
) -> None:
    """Set a staff user's password (their open sessions end)."""
    with _session(as_json) as session:
        service.get_user(session, username)  # refuse an unknown user before asking for a password
        password = _read_password(password_stdin)
        user = service.reset_password(session, actor=CLI, username=username, password=password)
        session.commit()
        emit(
            {"username": user.username, "password_reset": True},
            as_json=as_json,
            text=f"password of {user.username} set",
        )
