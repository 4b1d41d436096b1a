"""The console's menu: each page with the roles that see it (admins see every page)."""

from __future__ import annotations

from simkeep.auth.actors import Actor
from simkeep.models import StaffRole

R = StaffRole
#: (path, text key, roles). Page modules append their entry with :func:`register`.
MENU: list[tuple[str, str, frozenset[StaffRole]]] = []


def register(path: str, key: str, *roles: StaffRole) -> None:
    """Show ``path`` in the menu to staff with one of ``roles``."""
    if all(p != path for p, _, _ in MENU):
        MENU.append((path, key, frozenset(roles)))


def menu_for(actor: Actor) -> list[tuple[str, str]]:
    """The entries this staff user sees."""
    return [(path, key) for path, key, roles in MENU if actor.has_role(*roles)]
