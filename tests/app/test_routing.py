"""The JSON API's route class: a sync endpoint's work on the thread pool, its answer on the event loop."""

from __future__ import annotations

import threading

from fastapi import APIRouter, FastAPI, Header
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from simkeep.routing import OneTripRoute, in_one_trip


class Answer(BaseModel):
    """What the test endpoints return."""

    thread: str
    count: int


def _router(route_class: type[APIRoute] = OneTripRoute) -> tuple[APIRouter, set[str]]:
    router = APIRouter(route_class=route_class)
    loop_threads: set[str] = set()

    @router.get("/sync/{count}")
    def sync_endpoint(count: int, x_note: str = Header("none")) -> Answer:
        """A sync endpoint: its docstring is the operation's description."""
        return Answer(thread=threading.current_thread().name, count=count + len(x_note))

    @router.get("/async")
    async def async_endpoint() -> Answer:
        """An async endpoint runs on the event loop, as before."""
        loop_threads.add(threading.current_thread().name)
        return Answer(thread=threading.current_thread().name, count=0)

    @router.get("/wrong")
    def wrong_answer() -> Answer:
        """An answer that does not match the model is still refused."""
        return {"thread": "x"}  # type: ignore[return-value]

    return router, loop_threads


class TestOneTripRoute:
    """Sync endpoints keep their parameters, documentation and validation, and still run off the loop."""

    def test_a_sync_endpoint_runs_on_a_worker_thread_with_its_parameters(self) -> None:
        """Path, header and response model work as for a plain route; the work is not on the loop's thread."""
        router, loop_threads = _router()
        app = FastAPI()
        app.include_router(router)
        with TestClient(app) as client:
            loop = client.get("/async").json()["thread"]
            r = client.get("/sync/4", headers={"x-note": "abc"})
        assert r.status_code == 200
        assert r.json()["count"] == 7
        assert r.json()["thread"] != loop
        assert loop_threads == {loop}

    def test_the_openapi_description_is_the_endpoints_own(self) -> None:
        """Name, summary, description, parameters and response schema come from the wrapped function."""
        documented = []
        for route_class in (OneTripRoute, APIRoute):
            app = FastAPI()
            app.include_router(_router(route_class)[0])
            documented.append(app.openapi())
        assert documented[0] == documented[1]
        operation = documented[0]["paths"]["/sync/{count}"]["get"]
        assert operation["description"] == "A sync endpoint: its docstring is the operation's description."
        assert operation["operationId"].startswith("sync_endpoint")

    def test_a_wrong_answer_is_still_refused(self) -> None:
        """Validation of the answer against the model still happens (now on the loop): a 500, not bad JSON."""
        router, _ = _router()
        app = FastAPI()
        app.include_router(router)
        with TestClient(app, raise_server_exceptions=False) as client:
            r = client.get("/wrong")
        assert r.status_code == 500

    def test_an_async_endpoint_is_left_as_it_is(self) -> None:
        """Only sync functions are wrapped."""

        async def already() -> None:
            return None

        def sync() -> None:
            return None

        assert in_one_trip(already) is already
        wrapped = in_one_trip(sync)
        assert wrapped is not sync
        assert wrapped.__wrapped__ is sync  # type: ignore[attr-defined]
        assert wrapped.__name__ == "sync"
