"""CAMARA Number Recycling v0.2: ``POST /number-recycling/v0.2/check`` exactly per number-recycling.yaml."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.camara.auth import issue_token
from simkeep.camara.number_recycling import history_says_recycled
from simkeep.config import Settings
from simkeep.models import Line, NumberRecycling
from tests import factories
from tests.camara.conftest import bearer, token_for
from tests.camara.spec import assert_conforms

SPEC = "number-recycling.yaml"
PATH = "/check"
URL = "/number-recycling/v0.2/check"
UNKNOWN = "+8613999999999"


def _at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def _line(db: Session, settings: Settings, activated: str = "2023-10-09") -> Line:
    """A line activated on ``activated`` (the spec's scenario: a contract signed 2023-10-09)."""
    line = factories.holder(db, settings).line
    line.activated_at = _at(activated)
    db.commit()
    return line


def _recycle(db: Session, line: Line, *, recycled: str, reassigned: str | None) -> None:
    db.add(
        NumberRecycling(
            msisdn=line.msisdn,
            line_id=line.id,
            recycled_at=_at(recycled),
            reassigned_at=_at(reassigned) if reassigned else None,
        )
    )
    db.commit()


@pytest.fixture
def token(api: TestClient, make_rp: Any) -> str:
    """A two-legged token with the Number Recycling scope."""
    return token_for(api, make_rp(["number-recycling:check"]))


def _check(api: TestClient, token: str, body: Any, **headers: str) -> Any:
    response = api.post(URL, json=body, headers=bearer(token, **headers))
    assert_conforms(SPEC, PATH, response.status_code, response.json())
    return response


def _error(response: Any) -> tuple[int, str]:
    body = response.json()
    assert body["status"] == response.status_code
    return response.status_code, body["code"]


class TestAnswers:
    """The spec's scenarios, on simkeep's history."""

    def test_scenario_1_same_subscriber_is_false(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """Scenario 1: the contract of 2023-10-09 still runs; asked about 2023-12-22 the answer is false."""
        line = _line(db, camara_settings)
        response = _check(api, token, {"phoneNumber": line.msisdn, "specifiedDate": "2023-12-22"})
        assert (response.status_code, response.json()) == (200, {"phoneNumberRecycled": False})

    def test_contract_date_itself_is_false(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """The spec's note: asked about the very day the contract was signed, the answer is false."""
        line = _line(db, camara_settings)
        response = _check(api, token, {"phoneNumber": line.msisdn, "specifiedDate": "2023-10-09"})
        assert response.json() == {"phoneNumberRecycled": False}

    def test_scenario_2_new_subscriber_is_true(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """Scenario 2: cancelled 2024-02-25, given to B on 2024-09-21; asked about 2023-12-22: true."""
        line = _line(db, camara_settings, activated="2024-09-21")
        _recycle(db, line, recycled="2024-02-25", reassigned="2024-09-21")
        response = _check(api, token, {"phoneNumber": line.msisdn, "specifiedDate": "2023-12-22"})
        assert response.json() == {"phoneNumberRecycled": True}

    def test_day_without_contract_is_true(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """Scenario 2's note: a day between the cancellation and the new contract answers true."""
        line = _line(db, camara_settings, activated="2024-09-21")
        _recycle(db, line, recycled="2024-02-25", reassigned="2024-09-21")
        response = _check(api, token, {"phoneNumber": line.msisdn, "specifiedDate": "2024-05-01"})
        assert response.json() == {"phoneNumberRecycled": True}

    def test_new_subscribers_contract_date_is_false(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """Asked about the day B signed (2024-09-21) or later, the subscriber has not changed since: false."""
        line = _line(db, camara_settings, activated="2024-09-21")
        _recycle(db, line, recycled="2024-02-25", reassigned="2024-09-21")
        for day in ("2024-09-21", "2024-11-02"):
            response = _check(api, token, {"phoneNumber": line.msisdn, "specifiedDate": day})
            assert response.json() == {"phoneNumberRecycled": False}, day

    def test_three_legged_token_answers_for_its_number(
        self, api: TestClient, make_rp: Any, db: Session, camara_settings: Settings
    ) -> None:
        """A token bound to a number answers for that number without phoneNumber in the body."""
        line = _line(db, camara_settings)
        rp = make_rp(["number-recycling:check"])
        token, _ = issue_token(
            camara_settings,
            client_id=rp.client_id,
            scopes=["number-recycling:check"],
            phone_number=line.msisdn,
        )
        response = _check(api, token, {"specifiedDate": "2023-12-22"})
        assert (response.status_code, response.json()) == (200, {"phoneNumberRecycled": False})

    def test_x_correlator_is_echoed(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """A valid x-correlator comes back on the answer."""
        line = _line(db, camara_settings)
        response = _check(
            api,
            token,
            {"phoneNumber": line.msisdn, "specifiedDate": "2024-01-01"},
            **{"x-correlator": "b4333c46-49c0:x"},
        )
        assert response.headers["x-correlator"] == "b4333c46-49c0:x"


class TestErrors:
    """Every error the spec lists for this operation, as ``{status, code, message}``."""

    def test_no_token_is_401(self, api: TestClient) -> None:
        """Without a bearer token: 401 UNAUTHENTICATED."""
        response = api.post(URL, json={"phoneNumber": UNKNOWN, "specifiedDate": "2024-01-01"})
        assert_conforms(SPEC, PATH, 401, response.json())
        assert _error(response) == (401, "UNAUTHENTICATED")

    @pytest.mark.parametrize("header", ["Bearer nonsense", "Basic abc", "Bearer a.b.c", "Bearer "])
    def test_bad_token_is_401(self, api: TestClient, header: str) -> None:
        """A malformed, forged or non-bearer token: 401 UNAUTHENTICATED."""
        response = api.post(
            URL,
            json={"phoneNumber": UNKNOWN, "specifiedDate": "2024-01-01"},
            headers={"Authorization": header},
        )
        assert_conforms(SPEC, PATH, 401, response.json())
        assert _error(response) == (401, "UNAUTHENTICATED")

    def test_expired_token_is_401(self, api: TestClient, make_rp: Any, camara_settings: Settings) -> None:
        """An expired token: 401 UNAUTHENTICATED."""
        rp = make_rp()
        token, _ = issue_token(
            camara_settings,
            client_id=rp.client_id,
            scopes=["number-recycling:check"],
            now=datetime.now(UTC).timestamp() - 3600,
        )
        response = _check(api, token, {"phoneNumber": UNKNOWN, "specifiedDate": "2024-01-01"})
        assert _error(response) == (401, "UNAUTHENTICATED")

    def test_other_scope_is_403(self, api: TestClient, make_rp: Any) -> None:
        """A token without number-recycling:check: 403 PERMISSION_DENIED."""
        token = token_for(api, make_rp(["sim-swap:check"]))
        response = _check(api, token, {"phoneNumber": UNKNOWN, "specifiedDate": "2024-01-01"})
        assert _error(response) == (403, "PERMISSION_DENIED")

    @pytest.mark.parametrize(
        "body",
        [
            {"phoneNumber": "8613800000000", "specifiedDate": "2024-01-01"},
            {"phoneNumber": "+0613800000000", "specifiedDate": "2024-01-01"},
            {"phoneNumber": "+8613", "specifiedDate": "2024-01-01"},
            {"phoneNumber": 8613800000000, "specifiedDate": "2024-01-01"},
            {"phoneNumber": UNKNOWN},
            {"phoneNumber": UNKNOWN, "specifiedDate": "2024-1-1"},
            {"phoneNumber": UNKNOWN, "specifiedDate": "2024-02-30"},
            {"phoneNumber": UNKNOWN, "specifiedDate": "2024-01-01T00:00:00Z"},
            {"phoneNumber": UNKNOWN, "specifiedDate": 20240101},
            [],
        ],
    )
    def test_invalid_body_is_400(self, api: TestClient, token: str, body: Any) -> None:
        """A bad phone number, a missing or malformed date, or a body that is not an object: 400."""
        response = _check(api, token, body)
        assert _error(response) == (400, "INVALID_ARGUMENT")

    def test_body_not_json_is_400(self, api: TestClient, token: str) -> None:
        """A body that is not JSON: 400 INVALID_ARGUMENT."""
        response = api.post(
            URL, content=b"{nope", headers=bearer(token, **{"Content-Type": "application/json"})
        )
        assert_conforms(SPEC, PATH, 400, response.json())
        assert _error(response) == (400, "INVALID_ARGUMENT")

    def test_future_date_is_out_of_range(self, api: TestClient, token: str) -> None:
        """A specifiedDate after today everywhere on Earth: 400 OUT_OF_RANGE."""
        future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
        response = _check(api, token, {"phoneNumber": UNKNOWN, "specifiedDate": future})
        assert _error(response) == (400, "OUT_OF_RANGE")

    def test_unknown_number_is_404(self, api: TestClient, token: str) -> None:
        """A number simkeep never had: 404 IDENTIFIER_NOT_FOUND."""
        response = _check(api, token, {"phoneNumber": UNKNOWN, "specifiedDate": "2024-01-01"})
        assert _error(response) == (404, "IDENTIFIER_NOT_FOUND")

    def test_no_identifier_is_422_missing(self, api: TestClient, token: str) -> None:
        """A two-legged token and no phoneNumber: 422 MISSING_IDENTIFIER."""
        response = _check(api, token, {"specifiedDate": "2024-01-01"})
        assert _error(response) == (422, "MISSING_IDENTIFIER")

    def test_number_with_bound_token_is_422_unnecessary(
        self, api: TestClient, make_rp: Any, camara_settings: Settings
    ) -> None:
        """A bound token and a phoneNumber in the body (even the same): 422 UNNECESSARY_IDENTIFIER."""
        rp = make_rp()
        token, _ = issue_token(
            camara_settings, client_id=rp.client_id, scopes=["number-recycling:check"], phone_number=UNKNOWN
        )
        response = _check(api, token, {"phoneNumber": UNKNOWN, "specifiedDate": "2024-01-01"})
        assert _error(response) == (422, "UNNECESSARY_IDENTIFIER")

    def test_error_echoes_x_correlator(self, api: TestClient, token: str) -> None:
        """Errors echo a valid x-correlator too."""
        response = _check(api, token, {"specifiedDate": "2024-01-01"}, **{"x-correlator": "abc-123"})
        assert response.headers["x-correlator"] == "abc-123"

    @pytest.mark.parametrize("value", ["has space", "a=b", "x" * 257, "a,b"])
    def test_bad_x_correlator_is_400_and_not_echoed(self, api: TestClient, token: str, value: str) -> None:
        """An x-correlator outside the spec's pattern: 400 INVALID_ARGUMENT, and it is not echoed back."""
        response = api.post(
            URL,
            json={"phoneNumber": UNKNOWN, "specifiedDate": "2024-01-01"},
            headers=bearer(token, **{"x-correlator": value}),
        )
        assert_conforms(SPEC, PATH, 400, response.json())
        assert _error(response) == (400, "INVALID_ARGUMENT")
        assert "x-correlator" not in response.headers


class TestHistoryRule:
    """The spec's rule applied to simkeep's history (what the route answers when keep-alive says no)."""

    def _line(self, activated: str) -> Line:
        return Line(msisdn=UNKNOWN, subscriber_id=1, plan_id=1, activated_at=_at(activated))

    def _rec(self, recycled: str, reassigned: str | None) -> NumberRecycling:
        return NumberRecycling(
            msisdn=UNKNOWN,
            line_id=1,
            recycled_at=_at(recycled),
            reassigned_at=_at(reassigned) if reassigned else None,
        )

    def test_number_in_quarantine_is_recycled(self) -> None:
        """Recycled and not yet given to anyone: the holder of the date has lost it, so true."""
        assert history_says_recycled(
            self._line("2023-01-01"), [self._rec("2024-02-25", None)], date(2024, 1, 1)
        )

    def test_line_activated_after_the_date_is_recycled(self) -> None:
        """A line activated after the date had no holder with us then: true."""
        assert history_says_recycled(self._line("2024-06-01"), [], date(2024, 1, 1))

    def test_reassignment_before_the_date_is_not(self) -> None:
        """A recycling that ended (new holder) before the date does not count."""
        assert not history_says_recycled(
            self._line("2023-03-01"), [self._rec("2022-01-01", "2023-03-01")], date(2023, 3, 1)
        )
