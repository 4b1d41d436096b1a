"""The ASGI hot path layer (simkeep.camara.fastpath): the body limit, failures and the request id, answered
as the app's own layers would, with nothing recorded for a request that was never answered."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.camara.operations import SIM_SWAP_CHECK, Operation
from simkeep.camara.runtime import CamaraRuntime
from tests import factories
from tests.camara.conftest import Rp, bearer, logged, token_for


def _queries(db: Session) -> int:
    return len(logged(db))


class TestFastPathLayer:
    """What the layer adds around :func:`simkeep.camara.operations.respond`."""

    def test_a_body_over_the_limit_is_refused_before_it_is_read(
        self, api: TestClient, make_rp: Any, runtime: CamaraRuntime, db: Session
    ) -> None:
        """A declared length over the limit, and a chunked body (no declared length) that grows past it, both
        end in the app's 413 problem document; nothing is recorded."""
        token = token_for(api, make_rp(["sim-swap:check"]))
        limit = runtime.settings.max_request_bytes
        big = b'{"phoneNumber": "+8613800000000", "pad": "' + b" " * limit + b'"}'
        response = api.post(SIM_SWAP_CHECK, content=big, headers=bearer(token))
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "REQUEST_TOO_LARGE"

        def chunks() -> Any:
            yield big[: limit // 2]
            yield big[limit // 2 :]

        response = api.post(SIM_SWAP_CHECK, content=chunks(), headers=bearer(token))
        assert response.status_code == 413
        runtime.recorder.flush()
        assert _queries(db) == 0

    def test_an_unexpected_failure_answers_500_internal_and_is_logged(
        self,
        api: TestClient,
        make_rp: Any,
        runtime: CamaraRuntime,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A bug behind the checks answers CAMARA's 500 INTERNAL (no stack trace to the bank), the request
        id comes back, and the failure is logged with it."""
        token = token_for(api, make_rp(["sim-swap:check"]))
        operation = runtime.operations[SIM_SWAP_CHECK]

        def broken(*_: Any) -> Any:
            raise RuntimeError("database on fire")

        monkeypatch.setitem(
            runtime.operations,
            SIM_SWAP_CHECK,
            Operation(operation.api, operation.scopes, operation.prepare, broken, None),
        )
        response = api.post(
            SIM_SWAP_CHECK,
            json={"phoneNumber": "+8613800000000"},
            headers=bearer(token, **{"x-request-id": "trace-500"}),
        )
        assert response.status_code == 500
        assert response.json() == {
            "status": 500,
            "code": "INTERNAL",
            "message": "The server could not answer; try again.",
        }
        assert response.headers["x-request-id"] == "trace-500"
        assert "database on fire" not in response.text
        logged = capsys.readouterr().err
        assert "camara.operation_failed" in logged
        assert "trace-500" in logged

    def test_answers_carry_a_request_id_given_or_made(
        self, api: TestClient, make_rp: Any, db: Session, settings: Any
    ) -> None:
        """The caller's x-request-id comes back; without one, each answer gets its own 32-character id."""
        rp: Rp = make_rp(["sim-swap:check"])
        token = token_for(api, rp)
        msisdn = factories.holder(db, settings).line.msisdn
        db.commit()
        given = api.post(
            SIM_SWAP_CHECK, json={"phoneNumber": msisdn}, headers=bearer(token, **{"x-request-id": "abc"})
        )
        assert given.status_code == 200
        assert given.headers["x-request-id"] == "abc"
        made = [
            api.post(SIM_SWAP_CHECK, json={"phoneNumber": msisdn}, headers=bearer(token)).headers[
                "x-request-id"
            ]
            for _ in range(3)
        ]
        assert len(set(made)) == 3
        assert all(len(rid) == 32 for rid in made)
