"""Errors of the replacement workflow."""

from __future__ import annotations

from simkeep.errors import Conflict, DomainError, InvalidInput, NotAllowed, NotFound
from simkeep.shipping.service import AddressInvalid  # noqa: F401 - re-exported for callers


class OrderNotFound(NotFound):
    """No such order, or not one the caller may see."""

    code = "ORDER_NOT_FOUND"


class TransitionNotAllowed(DomainError):
    """The order is not in a state (or channel) where this step may run."""

    code = "TRANSITION_NOT_ALLOWED"


class ReplacementAlreadyOpen(Conflict):
    """The line already has an open replacement order."""

    code = "REPLACEMENT_ALREADY_OPEN"


class CooldownActive(DomainError):
    """An online replacement was made for this line too recently."""

    code = "COOLDOWN_ACTIVE"


class SimChangeLocked(DomainError):
    """The holder turned the SIM-change lock on; the refused attempt is audited and the holder alerted."""

    code = "SIM_CHANGE_LOCKED"
    keep_changes = True


class ActorNotAllowed(NotAllowed):
    """This actor may not take this step."""

    code = "ACTOR_NOT_ALLOWED"


class IccidMismatch(DomainError):
    """The digits given are not those of the new SIM sent for this order."""

    code = "PROOF_FAILED"
    keep_changes = True


class PaymentInvalid(InvalidInput):
    """A payment that cannot be recorded as given."""

    code = "PAYMENT_INVALID"
