"""``simkeep demo``."""

from __future__ import annotations


def demo() -> None:
    """Load the demo dataset."""
