"""CAMARA Number Recycling v0.2: was the number given to another subscriber after a date."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy.orm import Session

from simkeep.camara import repository
from simkeep.camara.errors import CamaraError
from simkeep.models import Line, NumberRecycling

API = "number-recycling.check"
SCOPES = ("number-recycling:check",)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
# The earliest time zone on Earth: a date is "in the future" only once no place has reached it yet.
_EARLIEST_ZONE = timezone(timedelta(hours=14))


def specified_date(data: dict[str, Any], *, now: datetime | None = None) -> date:
    """``specifiedDate``: INVALID_ARGUMENT when missing or not YYYY-MM-DD, OUT_OF_RANGE when in the future."""
    value = data.get("specifiedDate")
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise CamaraError("INVALID_ARGUMENT", "specifiedDate is required, as a date in YYYY-MM-DD format.")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise CamaraError("INVALID_ARGUMENT", "specifiedDate is not a valid calendar date.") from exc
    today_somewhere = (now or datetime.now(UTC)).astimezone(_EARLIEST_ZONE).date()
    if day > today_somewhere:
        raise CamaraError("OUT_OF_RANGE", "specifiedDate must not be in the future.")
    return day


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def new_holder_after(recyclings: Sequence[NumberRecycling], day: date) -> bool:
    """A recycling whose new holder got the number after ``day`` (UTC dates). On the very day of the new
    contract the answer is false: the spec's note on the contract date."""
    return any(r.reassigned_at is not None and _day(r.reassigned_at) > day for r in recyclings)


def no_holder_then_or_now(line: Line | None, recyclings: Sequence[NumberRecycling], day: date) -> bool:
    """The other cases where whoever held the number on ``day`` is not whoever holds it now:

    - a recycling not yet followed by a new holder (the number rests in quarantine): the holder of ``day``
      lost it, or ``day`` fell in the quarantine (a day with no contract answers true, says the spec);
    - the current line was activated after ``day``: the number had no holder with this operator then.
    """
    if any(r.reassigned_at is None for r in recyclings):
        return True
    return line is not None and _day(line.activated_at) > day


def history_says_recycled(line: Line | None, recyclings: Sequence[NumberRecycling], day: date) -> bool:
    """The spec's rule on simkeep's history: true when whoever held the number on ``day`` is not whoever
    holds it now."""
    return new_holder_after(recyclings, day) or no_holder_then_or_now(line, recyclings, day)


def _keepalive_recycled_after() -> Callable[[Session, str, date], bool] | None:
    """``simkeep.keepalive.service.recycled_after`` once the keep-alive domain provides it."""
    try:
        module = importlib.import_module("simkeep.keepalive.service")
    except ImportError:
        return None
    found: Callable[[Session, str, date], bool] | None = getattr(module, "recycled_after", None)
    return found


def check_number_recycling(session: Session, *, msisdn: str, day: date) -> bool:
    """Whether ``msisdn`` changed subscriber after ``day``; IDENTIFIER_NOT_FOUND when simkeep never had it."""
    line = repository.line_by_msisdn(session, msisdn)
    recyclings = repository.recyclings_of(session, msisdn)
    keepalive = _keepalive_recycled_after()
    # The keep-alive domain answers "given to someone else after this moment"; from the start of the next
    # day (UTC), so that the new holder's own contract date answers false as the spec says. It is asked
    # for unknown numbers too, so that they cost the same queries as known ones.
    next_day = datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)
    reassigned = keepalive(session, msisdn, next_day) if keepalive is not None else None
    if line is None and not recyclings:
        raise CamaraError("IDENTIFIER_NOT_FOUND")
    if reassigned is None:
        return history_says_recycled(line, recyclings, day)
    return reassigned or no_holder_then_or_now(line, recyclings, day)
