"""How fast the machine runs at the moment a benchmark starts.

The development machine's speed drifts by the hour (the same code has measured 25-40% apart an hour later),
so a figure alone does not say whether code or machine changed. Each import, sweep and load benchmark
prints this line first; compare figures taken at similar loop times, or better, side by side.
"""

from __future__ import annotations

import time

STEPS = 10_000_000


def loop_seconds(steps: int = STEPS, rounds: int = 3) -> float:
    """The best of ``rounds`` timings of an empty ``steps``-step Python loop, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(steps):
            pass
        best = min(best, time.perf_counter() - started)
    return best


def report() -> None:
    """Print the machine's speed line."""
    print(f"machine: a {STEPS:,}-step Python loop takes {loop_seconds():.3f} s (best of 3)", flush=True)
