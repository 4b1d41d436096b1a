"""The world the state machine acts in: two stores, staff, two holders, stock, and the actors who act.

It is built once per test inside the test's transaction; each hypothesis example runs in a savepoint of its
own on top of it and is rolled back at the end, so every example starts from the same world.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image
from sqlalchemy.orm import Session

from simkeep.auth.actors import SYSTEM, Actor
from simkeep.config import Settings
from simkeep.identity.assurance import Assurance
from simkeep.models import SimKind, StaffRole, StaffUser
from tests import factories


def holder_actor(line_id: int) -> Actor:
    """A holder signed in to a line with the service password, as the API resolves a line token."""
    return Actor(
        kind="line",
        label=f"line:{line_id}",
        line_id=line_id,
        assurance=Assurance.MEDIUM,
        proof_methods=("service_password",),
    )


def staff_actor(user: StaffUser) -> Actor:
    """A signed-in staff user, as the API resolves a staff token."""
    return Actor(
        kind="staff",
        label=f"staff:{user.username}",
        staff_user_id=user.id,
        role=user.role,
        store_id=user.store_id,
    )


@lru_cache(maxsize=1)
def small_jpeg() -> bytes:
    """A small, valid photo to upload (the slow checks are given as outcomes, not run)."""
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 180, 160)).save(out, format="JPEG")
    return out.getvalue()


@dataclass
class World:
    """Ids and numbers of everything the machine acts on (ids survive a savepoint's rollback; rows don't)."""

    line_ids: list[int]
    msisdns: list[str]
    store_ids: list[int]
    store_iccids: dict[int, list[str]]  # store id -> ICCIDs of its physical stock
    actors: dict[str, Actor]

    def holder(self, i: int) -> Actor:
        """The holder of line ``i``."""
        return self.actors[f"holder{i}"]


def build_world(db: Session, settings: Settings) -> World:
    """Two holders, two stores with a clerk and stock each, a reviewer, an admin, warehouse and eSIM stock."""
    stores = [factories.store(db), factories.store(db)]
    clerks = [factories.staff(db, StaffRole.CLERK, store_row=s) for s in stores]
    reviewer = factories.staff(db, StaffRole.REVIEWER)
    admin = factories.staff(db, StaffRole.ADMIN)
    store_iccids = {s.id: [factories.sim(db, store=s).iccid for _ in range(3)] for s in stores}
    for _ in range(3):
        factories.sim(db)
        factories.sim(db, kind=SimKind.ESIM)
    holders = [factories.holder(db, settings), factories.holder(db, settings, name="李娜")]
    actors = {
        "holder0": holder_actor(holders[0].line.id),
        "holder1": holder_actor(holders[1].line.id),
        "clerk0": staff_actor(clerks[0]),
        "clerk1": staff_actor(clerks[1]),
        "reviewer": staff_actor(reviewer),
        "admin": staff_actor(admin),
        "system": SYSTEM,
    }
    db.flush()
    return World(
        line_ids=[h.line.id for h in holders],
        msisdns=[h.msisdn for h in holders],
        store_ids=[s.id for s in stores],
        store_iccids=store_iccids,
        actors=actors,
    )
