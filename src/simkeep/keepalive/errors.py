"""Errors of the keep-alive domain (codes are stable; see docs in :mod:`simkeep.keepalive.service`)."""

from __future__ import annotations

from simkeep.errors import Conflict, InvalidInput, NotFound


class UsageEventInvalid(InvalidInput):
    """A usage event with a missing or malformed field."""

    code = "USAGE_EVENT_INVALID"


class NotRecycled(Conflict):
    """The line is not recycled, so there is nothing to undo."""

    code = "LINE_NOT_RECYCLED"


class GraceOver(Conflict):
    """The grace period after the recycling has ended; the recycling can no longer be undone."""

    code = "RECYCLING_GRACE_OVER"


class NumberReassigned(Conflict):
    """The number was given to someone else; the recycling can no longer be undone."""

    code = "NUMBER_REASSIGNED"


class NumberNotAvailable(Conflict):
    """The number is not in the pool as available (still in quarantine, assigned, or never recycled)."""

    code = "NUMBER_NOT_AVAILABLE"


class PlanNotFound(NotFound):
    """No plan with that code."""

    code = "PLAN_NOT_FOUND"


class SubscriberNotFound(NotFound):
    """No subscriber with that id."""

    code = "SUBSCRIBER_NOT_FOUND"
