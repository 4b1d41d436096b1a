"""Identity errors."""

from __future__ import annotations

from simkeep.errors import DomainError, NotAllowed


class ProofFailed(DomainError):
    """A proof did not check out. The failed attempt is kept even though the request fails."""

    code = "PROOF_FAILED"
    keep_changes = True


class AssuranceTooLow(NotAllowed):
    """The proofs given are genuine but not strong enough for this action."""

    code = "ASSURANCE_TOO_LOW"


class SelfServiceLocked(DomainError):
    """Too many failed proofs for this line recently; self-service is locked for a while."""

    code = "SELF_SERVICE_LOCKED"


class PasswordLocked(DomainError):
    """Too many wrong service passwords for this line recently; the holder was alerted."""

    code = "PASSWORD_LOCKED"
    keep_changes = True
