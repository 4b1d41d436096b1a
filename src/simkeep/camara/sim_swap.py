"""CAMARA SIM Swap v2 (sim-swap 2.1.0): when did the number last move to a SIM, and did it recently.

A swap is any new number-to-SIM binding (``sim_changes``: physical or eSIM replacements, the first SIM, and
the history of imported lines); a number with no recorded change answers from the line's activation
(a new subscription counts as a swap, says the spec). Every call reads the database (one statement, see
:mod:`simkeep.camara.reader`), so a change is seen by every worker as soon as it is committed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from simkeep.camara import repository
from simkeep.camara.errors import CamaraError
from simkeep.camara.repository import SwapFacts
from simkeep.models import LineStatus

API_CHECK = "sim-swap.check"
API_RETRIEVE = "sim-swap.retrieve-date"
CHECK_SCOPES = ("sim-swap:check", "sim-swap")
RETRIEVE_SCOPES = ("sim-swap:retrieve-date", "sim-swap")
DEFAULT_MAX_AGE = 240


def max_age(data: dict[str, Any], *, monitored_days: int) -> int:
    """``maxAge`` in hours: 240 when absent; INVALID_ARGUMENT when not an integer; OUT_OF_RANGE outside
    1..2400 or beyond the monitored period."""
    if "maxAge" not in data:
        value = DEFAULT_MAX_AGE
    else:
        value = data["maxAge"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise CamaraError("INVALID_ARGUMENT", "maxAge must be an integer number of hours.")
        if not 1 <= value <= 2400:
            raise CamaraError("OUT_OF_RANGE", "maxAge must be between 1 and 2400 hours.")
    if value > monitored_days * 24:
        raise CamaraError(
            "OUT_OF_RANGE",
            f"Check monitor period could not exceed local regulations ({monitored_days} days).",
        )
    return value


def latest_from(facts: SwapFacts | None) -> datetime:
    """The last time the number moved to a SIM (or, with no recorded change, its activation), from the
    one lookup of :func:`simkeep.camara.repository.swap_facts`; IDENTIFIER_NOT_FOUND for an unknown or
    recycled number. The lookup is the same statement whether the number is known or not, so that an
    unknown number costs what a known one does (CONVENTIONS: privacy of existence)."""
    if facts is None or facts[0] == LineStatus.RECYCLED.value:
        raise CamaraError("IDENTIFIER_NOT_FOUND")
    _, activated_at, changed = facts
    return (changed or activated_at).astimezone(UTC)


def latest_swap(session: Session, msisdn: str) -> datetime:
    """:func:`latest_from` of the number's facts read through ``session``."""
    return latest_from(repository.swap_facts(session, msisdn))


def swapped_from(facts: SwapFacts | None, *, hours: int, now: datetime | None = None) -> bool:
    """Whether the number moved to a SIM within the last ``hours`` hours (the boundary included)."""
    now = now or datetime.now(UTC)
    return latest_from(facts) >= now - timedelta(hours=hours)


def swapped_from_us(latest_us: int | None, *, hours: int, now_us: int | None = None) -> bool:
    """:func:`swapped_from` for the worker's copy of the facts (:meth:`FactsCache.latest_us
    <simkeep.camara.facts.FactsCache.latest_us>`): the last move to a SIM in microseconds since the epoch,
    None for an unknown or recycled number (IDENTIFIER_NOT_FOUND). The same comparison, boundary included,
    without a datetime."""
    if latest_us is None:
        raise CamaraError("IDENTIFIER_NOT_FOUND")
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    return latest_us >= now_us - hours * 3_600_000_000


def check_swapped(session: Session, *, msisdn: str, hours: int, now: datetime | None = None) -> bool:
    """:func:`swapped_from` of the number's facts read through ``session``."""
    return swapped_from(repository.swap_facts(session, msisdn), hours=hours, now=now)


def retrieve_from(
    facts: SwapFacts | None, *, monitored_days: int, now: datetime | None = None
) -> dict[str, Any]:
    """``{latestSimChange}``, or ``{latestSimChange: null, monitoredPeriod}`` when the last change is older
    than the period simkeep may disclose."""
    now = now or datetime.now(UTC)
    latest = latest_from(facts)
    if latest < now - timedelta(days=monitored_days):
        return {"latestSimChange": None, "monitoredPeriod": monitored_days}
    return {"latestSimChange": latest.isoformat().replace("+00:00", "Z")}


def retrieve_date(
    session: Session, *, msisdn: str, monitored_days: int, now: datetime | None = None
) -> dict[str, Any]:
    """:func:`retrieve_from` of the number's facts read through ``session``."""
    return retrieve_from(repository.swap_facts(session, msisdn), monitored_days=monitored_days, now=now)
