"""CAMARA SIM Swap v2: ``POST /sim-swap/v2/check`` and ``/sim-swap/v2/retrieve-date`` per sim-swap.yaml."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.orm import Session

from simkeep.camara import sim_swap
from simkeep.camara.auth import issue_token
from simkeep.camara.errors import CamaraError
from simkeep.config import Settings
from simkeep.models import Line, LineStatus, SimChange, SimChangeChannel, SimKind
from tests import factories
from tests.camara.conftest import bearer, token_for
from tests.camara.spec import assert_conforms

SPEC = "sim-swap.yaml"
CHECK = "/sim-swap/v2/check"
RETRIEVE = "/sim-swap/v2/retrieve-date"
UNKNOWN = "+8613999999999"


def _line(db: Session, settings: Settings, *, activated_hours_ago: float = 5000) -> Line:
    """A line activated long ago whose first SIM came with the activation."""
    holder = factories.holder(db, settings)
    when = datetime.now(UTC) - timedelta(hours=activated_hours_ago)
    holder.line.activated_at = when
    for change in db.query(SimChange).filter_by(line_id=holder.line.id):
        change.changed_at = when
    db.commit()
    return holder.line


def _swap(db: Session, line: Line, *, hours_ago: float, kind: SimKind = SimKind.PHYSICAL) -> datetime:
    """Move the number to a new SIM ``hours_ago`` hours ago."""
    new = factories.sim(db, kind=kind)
    when = datetime.now(UTC) - timedelta(hours=hours_ago)
    channel = SimChangeChannel.ESIM if kind == SimKind.ESIM else SimChangeChannel.STORE
    db.add(
        SimChange(
            line_id=line.id, old_sim_id=line.sim_id, new_sim_id=new.id, changed_at=when, channel=channel
        )
    )
    line.sim_id = new.id
    db.commit()
    return when


@pytest.fixture
def token(api: TestClient, make_rp: Any) -> str:
    """A two-legged token with both SIM Swap scopes."""
    return token_for(api, make_rp(["sim-swap:check", "sim-swap:retrieve-date"]))


def _post(api: TestClient, path: str, token: str, body: Any, **headers: str) -> Any:
    response = api.post(path, json=body, headers=bearer(token, **headers))
    assert_conforms(SPEC, path.removeprefix("/sim-swap/v2"), response.status_code, response.json())
    return response


def _error(response: Any) -> tuple[int, str]:
    assert response.json()["status"] == response.status_code
    return response.status_code, response.json()["code"]


class TestCheck:
    """``check``: swapped within ``maxAge`` hours (default 240)."""

    @pytest.mark.parametrize(
        ("hours_ago", "max_age", "swapped"),
        [
            (12, 24, True),
            (12, 6, False),
            (24, 48, True),
            (24, 12, False),
            (120, 240, True),
            (120, 100, False),
            (260, 2400, True),
            (260, 240, False),
        ],
    )
    def test_swap_against_max_age(
        self,
        api: TestClient,
        token: str,
        db: Session,
        camara_settings: Settings,
        hours_ago: int,
        max_age: int,
        swapped: bool,
    ) -> None:
        """A swap some hours ago is reported against a maxAge below and above it."""
        line = _line(db, camara_settings)
        _swap(db, line, hours_ago=hours_ago)
        response = _post(api, CHECK, token, {"phoneNumber": line.msisdn, "maxAge": max_age})
        assert (response.status_code, response.json()) == (200, {"swapped": swapped})

    @pytest.mark.parametrize(("hours_ago", "swapped"), [(239.9, True), (240.1, False)])
    def test_default_max_age_is_240_hours(
        self,
        api: TestClient,
        token: str,
        db: Session,
        camara_settings: Settings,
        hours_ago: float,
        swapped: bool,
    ) -> None:
        """Without maxAge the window is 240 hours."""
        line = _line(db, camara_settings)
        _swap(db, line, hours_ago=hours_ago)
        assert _post(api, CHECK, token, {"phoneNumber": line.msisdn}).json() == {"swapped": swapped}

    def test_esim_change_counts(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """A move to an eSIM profile is a swap."""
        line = _line(db, camara_settings)
        _swap(db, line, hours_ago=1, kind=SimKind.ESIM)
        assert _post(api, CHECK, token, {"phoneNumber": line.msisdn, "maxAge": 2}).json() == {"swapped": True}

    def test_new_subscription_counts(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """A line activated an hour ago answers swapped: the spec counts a new subscription as a swap."""
        line = _line(db, camara_settings, activated_hours_ago=1)
        assert _post(api, CHECK, token, {"phoneNumber": line.msisdn, "maxAge": 2}).json() == {"swapped": True}

    def test_three_legged_token(
        self, api: TestClient, make_rp: Any, db: Session, camara_settings: Settings
    ) -> None:
        """A token bound to the number answers without phoneNumber in the body."""
        line = _line(db, camara_settings)
        rp = make_rp()
        token, _ = issue_token(
            camara_settings, client_id=rp.client_id, scopes=["sim-swap"], phone_number=line.msisdn
        )
        assert _post(api, CHECK, token, {}).json() == {"swapped": False}

    def test_boundary_is_included(self, db: Session, camara_settings: Settings) -> None:
        """A swap exactly 240 hours before now is within the default window."""
        line = _line(db, camara_settings)
        when = _swap(db, line, hours_ago=300)
        assert sim_swap.check_swapped(db, msisdn=line.msisdn, hours=240, now=when + timedelta(hours=240))
        assert not sim_swap.check_swapped(
            db, msisdn=line.msisdn, hours=240, now=when + timedelta(hours=240, microseconds=1)
        )


class TestRetrieveDate:
    """``retrieve-date``: the last SIM change, or the activation, or null beyond the monitored period."""

    def test_last_change_is_returned(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """The timestamp of the latest swap, RFC 3339 with a zone, is returned."""
        line = _line(db, camara_settings)
        _swap(db, line, hours_ago=100)
        when = _swap(db, line, hours_ago=30)
        body = _post(api, RETRIEVE, token, {"phoneNumber": line.msisdn}, **{"x-correlator": "r-1"}).json()
        assert datetime.fromisoformat(body["latestSimChange"]) == when
        assert body["latestSimChange"].endswith("Z")

    def test_never_swapped_returns_activation(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """An imported line without SIM-change history answers with its activation date."""
        line = _line(db, camara_settings, activated_hours_ago=48)
        db.execute(delete(SimChange).where(SimChange.line_id == line.id))
        db.commit()
        body = _post(api, RETRIEVE, token, {"phoneNumber": line.msisdn}).json()
        assert datetime.fromisoformat(body["latestSimChange"]) == line.activated_at

    def test_beyond_monitored_period_is_null(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """A change older than the monitored period (100 days) is not disclosed: null, monitoredPeriod."""
        line = _line(db, camara_settings, activated_hours_ago=101 * 24)
        body = _post(api, RETRIEVE, token, {"phoneNumber": line.msisdn}).json()
        assert body == {"latestSimChange": None, "monitoredPeriod": 100}


class TestErrors:
    """Every error of sim-swap.yaml for both operations."""

    @pytest.mark.parametrize("path", [CHECK, RETRIEVE])
    def test_no_token_is_401(self, api: TestClient, path: str) -> None:
        """Without a token: 401 UNAUTHENTICATED."""
        response = api.post(path, json={"phoneNumber": UNKNOWN})
        assert_conforms(SPEC, path.removeprefix("/sim-swap/v2"), 401, response.json())
        assert _error(response) == (401, "UNAUTHENTICATED")

    @pytest.mark.parametrize(
        ("path", "scope"),
        [(CHECK, "sim-swap:retrieve-date"), (RETRIEVE, "sim-swap:check"), (CHECK, "number-recycling:check")],
    )
    def test_wrong_scope_is_403(self, api: TestClient, make_rp: Any, path: str, scope: str) -> None:
        """A token without the operation's scope (or the sim-swap umbrella scope): 403 PERMISSION_DENIED."""
        token = token_for(api, make_rp([scope]))
        assert _error(_post(api, path, token, {"phoneNumber": UNKNOWN})) == (403, "PERMISSION_DENIED")

    def test_umbrella_scope_allows_both(self, api: TestClient, make_rp: Any) -> None:
        """The ``sim-swap`` scope alone allows both operations (the spec's alternative)."""
        token = token_for(api, make_rp(["sim-swap"]))
        for path in (CHECK, RETRIEVE):
            assert _error(_post(api, path, token, {"phoneNumber": UNKNOWN})) == (404, "IDENTIFIER_NOT_FOUND")

    @pytest.mark.parametrize(
        "body",
        [
            {"phoneNumber": "12345"},
            {"phoneNumber": UNKNOWN, "maxAge": "240"},
            {"phoneNumber": UNKNOWN, "maxAge": 2.5},
            {"phoneNumber": UNKNOWN, "maxAge": True},
            [],
        ],
    )
    def test_invalid_check_body_is_400(self, api: TestClient, token: str, body: Any) -> None:
        """A bad phone number, a maxAge that is not an integer, or a non-object body: 400 INVALID_ARGUMENT."""
        assert _error(_post(api, CHECK, token, body)) == (400, "INVALID_ARGUMENT")

    @pytest.mark.parametrize("max_age", [0, -1, 2401])
    def test_max_age_outside_1_2400_is_out_of_range(self, api: TestClient, token: str, max_age: int) -> None:
        """maxAge outside 1..2400: 400 OUT_OF_RANGE."""
        response = _post(api, CHECK, token, {"phoneNumber": UNKNOWN, "maxAge": max_age})
        assert _error(response) == (400, "OUT_OF_RANGE")

    def test_max_age_beyond_monitored_period_is_out_of_range(
        self, db: Session, camara_settings: Settings
    ) -> None:
        """With a 30-day monitored period, maxAge 721 is OUT_OF_RANGE naming the limit; 720 is accepted."""
        with pytest.raises(CamaraError) as caught:
            sim_swap.max_age({"maxAge": 721}, monitored_days=30)
        assert caught.value.code == "OUT_OF_RANGE"
        assert "30 days" in caught.value.message
        assert sim_swap.max_age({"maxAge": 720}, monitored_days=30) == 720

    def test_invalid_retrieve_body_is_400(self, api: TestClient, token: str) -> None:
        """retrieve-date with a bad phone number: 400 INVALID_ARGUMENT."""
        assert _error(_post(api, RETRIEVE, token, {"phoneNumber": "+0123"})) == (400, "INVALID_ARGUMENT")

    @pytest.mark.parametrize("path", [CHECK, RETRIEVE])
    def test_unknown_number_is_404(self, api: TestClient, token: str, path: str) -> None:
        """A number simkeep does not serve: 404 IDENTIFIER_NOT_FOUND."""
        assert _error(_post(api, path, token, {"phoneNumber": UNKNOWN})) == (404, "IDENTIFIER_NOT_FOUND")

    def test_recycled_line_is_404(
        self, api: TestClient, token: str, db: Session, camara_settings: Settings
    ) -> None:
        """A recycled number (no subscriber now) is not served: 404 IDENTIFIER_NOT_FOUND."""
        line = _line(db, camara_settings)
        line.status = LineStatus.RECYCLED
        db.commit()
        assert _error(_post(api, CHECK, token, {"phoneNumber": line.msisdn})) == (404, "IDENTIFIER_NOT_FOUND")

    @pytest.mark.parametrize("path", [CHECK, RETRIEVE])
    def test_missing_identifier_is_422(self, api: TestClient, token: str, path: str) -> None:
        """Two-legged token without phoneNumber: 422 MISSING_IDENTIFIER."""
        assert _error(_post(api, path, token, {})) == (422, "MISSING_IDENTIFIER")

    @pytest.mark.parametrize("path", [CHECK, RETRIEVE])
    def test_unnecessary_identifier_is_422(
        self, api: TestClient, make_rp: Any, camara_settings: Settings, path: str
    ) -> None:
        """Bound token and phoneNumber in the body: 422 UNNECESSARY_IDENTIFIER."""
        rp = make_rp()
        token, _ = issue_token(
            camara_settings, client_id=rp.client_id, scopes=["sim-swap"], phone_number=UNKNOWN
        )
        response = _post(api, path, token, {"phoneNumber": UNKNOWN})
        assert _error(response) == (422, "UNNECESSARY_IDENTIFIER")

    @pytest.mark.parametrize("path", [CHECK, RETRIEVE])
    def test_rate_limit_is_429(self, api: TestClient, make_rp: Any, path: str) -> None:
        """Beyond the client's rate: 429 TOO_MANY_REQUESTS; beyond its quota: 429 QUOTA_EXCEEDED."""
        fast = token_for(api, make_rp(rps=1))
        _post(api, path, fast, {"phoneNumber": UNKNOWN})
        assert _error(_post(api, path, fast, {"phoneNumber": UNKNOWN})) == (429, "TOO_MANY_REQUESTS")
        small = token_for(api, make_rp(quota=1))
        _post(api, path, small, {"phoneNumber": UNKNOWN})
        assert _error(_post(api, path, small, {"phoneNumber": UNKNOWN})) == (429, "QUOTA_EXCEEDED")

    @pytest.mark.parametrize("path", [CHECK, RETRIEVE])
    def test_x_correlator_echoed_and_validated(self, api: TestClient, token: str, path: str) -> None:
        """A valid x-correlator is echoed; an invalid one is 400 INVALID_ARGUMENT and not echoed."""
        good = _post(api, path, token, {"phoneNumber": UNKNOWN}, **{"x-correlator": "a-1:b;c.d/<e>{f}"})
        assert good.headers["x-correlator"] == "a-1:b;c.d/<e>{f}"
        bad = _post(api, path, token, {"phoneNumber": UNKNOWN}, **{"x-correlator": "no spaces"})
        assert _error(bad) == (400, "INVALID_ARGUMENT")
        assert "x-correlator" not in bad.headers


class TestSwappedFromMicroseconds:
    """The hot path's check on microseconds answers as the check on datetimes does, boundary included."""

    def test_same_answer_as_the_datetime_check(self) -> None:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        now = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
        now_us = (now - epoch) // timedelta(microseconds=1)
        for hours in (1, 12, 24, 120, 240, 260, 2400):
            for offset_us in (-1, 0, 1, 3_600_000_000, -3_600_000_000):
                latest = now - timedelta(hours=hours) + timedelta(microseconds=offset_us)
                latest_us = (latest - epoch) // timedelta(microseconds=1)
                facts = ("active", latest - timedelta(days=1), latest)
                assert sim_swap.swapped_from_us(
                    latest_us, hours=hours, now_us=now_us
                ) == sim_swap.swapped_from(facts, hours=hours, now=now)

    def test_exactly_at_max_age_counts_as_swapped(self) -> None:
        assert sim_swap.swapped_from_us(1_000, hours=1, now_us=1_000 + 3_600_000_000)
        assert not sim_swap.swapped_from_us(999, hours=1, now_us=1_000 + 3_600_000_000)

    def test_unknown_or_recycled_is_not_found(self) -> None:
        with pytest.raises(CamaraError) as raised:
            sim_swap.swapped_from_us(None, hours=240)
        assert raised.value.code == "IDENTIFIER_NOT_FOUND"
