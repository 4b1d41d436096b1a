"""Errors about loss reports."""

from __future__ import annotations

from simkeep.errors import Conflict, InvalidInput


class NoOpenLossReport(Conflict):
    """Reinstatement asked for a line that is not suspended for loss."""

    code = "NO_OPEN_LOSS_REPORT"


class LossProofMissing(InvalidInput):
    """An anonymous report without the holder's name or document number."""

    code = "PROOF_MISSING"
