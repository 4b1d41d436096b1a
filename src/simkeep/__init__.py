"""simkeep: the operator's system for number-keeping SIM cards."""

__version__ = "0.1.0"
