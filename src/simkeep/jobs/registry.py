"""Job kinds and schedules, declared next to their code with :func:`job` and :func:`scheduled`.

A module that declares jobs is named in :data:`TASK_MODULES`; :func:`load_tasks` imports them, so the worker
knows every kind before it claims anything. Handlers run inside the worker's transaction (in a savepoint of
their own): their database changes and the job's completion are committed together. Effects outside the
database (a message handed to a transport) carry the job's key, so that a job run twice after a crash is
delivered once wherever the receiving side can tell.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from simkeep.config import Settings

#: Modules holding ``@job`` and ``@scheduled`` declarations.
TASK_MODULES = (
    "simkeep.notifications.tasks",
    "simkeep.notifications.receipts",
    "simkeep.replacements.tasks",
    "simkeep.identity.tasks",
    "simkeep.shipping.tasks",
    "simkeep.keepalive.tasks",
    "simkeep.camara.tasks",
    "simkeep.network.operations",
    "simkeep.esim.tasks",
)


@dataclass(frozen=True)
class JobContext:
    """What a handler is given besides its payload."""

    session: Session
    settings: Settings
    job_id: int
    key: str
    attempt: int


Handler = Callable[[JobContext, dict[str, Any]], None]


@dataclass(frozen=True)
class BatchItem:
    """One job of a batch handed to a batch handler."""

    context: JobContext
    payload: dict[str, Any]


#: Runs several jobs of one kind at once; returns the error of each job that failed, by job id.
BatchHandler = Callable[[list[BatchItem]], dict[int, Exception]]


@dataclass(frozen=True)
class JobKind:
    """A kind of job: its handler (and optional batch handler) and how often it is tried."""

    name: str
    handler: Handler
    max_attempts: int
    backoff_s: float
    batch: BatchHandler | None = None


@dataclass(frozen=True)
class Schedule:
    """A job that falls due every ``every``."""

    name: str
    every: timedelta


KINDS: dict[str, JobKind] = {}
SCHEDULES: dict[str, Schedule] = {}


def job(
    name: str, *, max_attempts: int = 8, backoff_s: float = 15.0, batch: BatchHandler | None = None
) -> Callable[[Handler], Handler]:
    """Declare a job kind; retries wait ``backoff_s`` doubled at each try (capped at an hour).

    With ``batch``, the worker hands the jobs of this kind in one batch to that function at once (fewer
    round trips: one query for all of them), in one savepoint. A batch handler must leave no database
    change behind for a job it reports as failed; if it raises, every job it was given fails this try.
    """

    def register(handler: Handler) -> Handler:
        KINDS[name] = JobKind(name, handler, max_attempts, backoff_s, batch)
        return handler

    return register


def scheduled(name: str, *, every: timedelta, max_attempts: int = 3) -> Callable[[Handler], Handler]:
    """Declare a periodic job: the worker enqueues it once per ``every`` (also with several workers)."""

    def register(handler: Handler) -> Handler:
        KINDS[name] = JobKind(name, handler, max_attempts, 60.0)
        SCHEDULES[name] = Schedule(name, every)
        return handler

    return register


def load_tasks() -> None:
    """Import every module that declares jobs."""
    for module in TASK_MODULES:
        importlib.import_module(module)


def backoff(kind: JobKind, attempt: int) -> timedelta:
    """The wait before try ``attempt + 1``."""
    return timedelta(seconds=min(3600.0, kind.backoff_s * 2 ** max(0, attempt - 1)))
