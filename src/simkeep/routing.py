"""The JSON API's route class: a sync endpoint's work and its answer in one trip to the thread pool.

FastAPI runs a sync (``def``) endpoint on a worker thread, then, in a second trip, validates its return value
against the response model on another (it cannot know the validation is pure). Each trip wakes a thread and
hands the interpreter lock over and back, and under load that is CPU the server's other requests (the CAMARA
checks, tens of thousands a second) do not get. The JSON API's routers use :class:`OneTripRoute`, which
turns each sync endpoint into an async one that awaits the same function on the thread pool: the work runs
there as before (it may block on the database) and the answer is validated and serialised on the event loop,
which only copies a model already built. The endpoint's signature, name and docstring are its own, so its
parameters, dependencies and OpenAPI description do not change. Async endpoints are left as they are.

A request that fails ends its session's transaction in the same trip, before the thread is given back:
committed when the error keeps its changes (a recorded failed proof), otherwise rolled back. Left to the
session's own teardown, the rollback would wait for a thread of its own while holding the transaction's locks
(a line row locked ``FOR UPDATE``, SQLite's write lock), and with every thread taken by requests waiting for
those locks, neither would ever go on.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from simkeep.errors import DomainError


def in_one_trip(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` as a coroutine function awaiting it on the thread pool (an async one unchanged)."""
    if inspect.iscoroutinefunction(endpoint):
        return endpoint

    @functools.wraps(endpoint)  # FastAPI reads the parameters and annotations through __wrapped__
    async def on_a_thread(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(_ending_on_error, endpoint, args, kwargs)

    return on_a_thread


def _ending_on_error(endpoint: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run the endpoint; if it raises, end its sessions' transactions here (see the module) and raise on."""
    try:
        return endpoint(*args, **kwargs)
    except BaseException as exc:
        keep = isinstance(exc, DomainError) and exc.keep_changes
        for value in kwargs.values():
            if isinstance(value, Session) and value.in_transaction():
                if keep:
                    value.commit()
                else:
                    value.rollback()
        raise


class OneTripRoute(APIRoute):
    """An API route whose sync endpoint makes one trip to the thread pool, not two (:func:`in_one_trip`)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, in_one_trip(endpoint), **kwargs)
