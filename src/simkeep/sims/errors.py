"""Errors about SIM stock."""

from __future__ import annotations

from simkeep.errors import Conflict, DomainError


class NoSimInStock(DomainError):
    """No SIM of the needed kind is in stock where it is needed."""

    code = "NO_SIM_IN_STOCK"


class SimNotAvailable(Conflict):
    """The SIM named is not in stock here (wrong store, wrong kind, already used)."""

    code = "SIM_NOT_AVAILABLE"
