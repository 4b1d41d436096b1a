"""The keep-alive calendar of one line: its deadline, its reminder points and when the sweep next acts.

Pure functions, no database. Definitions used everywhere (portal, console, sweep, import):

- ``deadline = (last_activity_at or activated_at) + plan.inactivity_days``; the line is recycled by the first
  sweep at or after the deadline, never before.
- ``days_left = floor((deadline - now) / 1 day)``, at least 0. A reminder point ``P`` is crossed at
  ``deadline - P days``: exactly then ``days_left == P``. Points outside ``0 < P < inactivity_days`` are
  ignored (they would be crossed at the very moment of the activity).
- ``next_action_at`` is the time of the earliest point not yet crossed, else the deadline. When computed
  for a line that has crossed points already (import, plan change), it is the nearest crossed point, so the
  next sweep looks at the line at once; the unique reminder row makes that harmless when it was sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

DAY = timedelta(days=1)
#: ``next_action_at`` of a recycled line: the sweep has nothing more to do with it.
NEVER = datetime(9999, 1, 1, tzinfo=UTC)


def points_of(reminder_days: Iterable[int], inactivity_days: int) -> tuple[int, ...]:
    """The plan's usable reminder points, largest first, without duplicates."""
    return tuple(sorted({int(p) for p in reminder_days if 0 < int(p) < inactivity_days}, reverse=True))


def deadline_of(since: datetime, inactivity_days: int) -> datetime:
    """When a number with its last activity (or activation) at ``since`` is recycled."""
    return since + timedelta(days=inactivity_days)


def days_left(deadline: datetime, now: datetime) -> int:
    """Whole days left before the deadline (0 at or after it)."""
    return max(0, (deadline - now) // DAY)


def crossed_point(deadline: datetime, points: tuple[int, ...], now: datetime) -> int | None:
    """The nearest reminder point crossed by ``now`` (the smallest ``P`` with ``deadline - P <= now``)."""
    crossed = [p for p in points if deadline - p * DAY <= now]
    return min(crossed) if crossed else None


def next_after(deadline: datetime, points: tuple[int, ...], now: datetime) -> datetime:
    """The earliest point time after ``now``, else the deadline."""
    future = [deadline - p * DAY for p in points if deadline - p * DAY > now]
    return min(future) if future else deadline


def next_action(deadline: datetime, points: tuple[int, ...], now: datetime) -> datetime:
    """``next_action_at`` for a freshly computed deadline (see the module docstring)."""
    crossed = crossed_point(deadline, points, now)
    if crossed is not None and deadline > now:
        return deadline - crossed * DAY
    return next_after(deadline, points, now)
