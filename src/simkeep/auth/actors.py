"""Who is acting: a staff user, a holder signed in to a line, an anonymous caller or the system."""

from __future__ import annotations

from dataclasses import dataclass, field

from simkeep.identity.assurance import Assurance
from simkeep.models import StaffRole


@dataclass(frozen=True)
class Actor:
    """The authenticated caller of a service function."""

    kind: str  # "staff" | "line" | "anonymous" | "system" | "cli"
    label: str  # what the audit log records, e.g. "staff:alice" or "line:42"
    staff_user_id: int | None = None
    role: StaffRole | None = None
    store_id: int | None = None
    line_id: int | None = None
    assurance: Assurance = Assurance.NONE
    proof_methods: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_staff(self) -> bool:
        """Whether a staff user is acting."""
        return self.kind == "staff"

    def has_role(self, *roles: StaffRole) -> bool:
        """Whether a staff user with one of ``roles`` is acting (admins count as every role)."""
        return self.is_staff and (self.role in roles or self.role == StaffRole.ADMIN)


ANONYMOUS = Actor(kind="anonymous", label="anonymous")
SYSTEM = Actor(kind="system", label="system")
CLI = Actor(kind="cli", label="cli", role=StaffRole.ADMIN)
