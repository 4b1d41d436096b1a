"""Enumeration of numbers (and staff names) through what sign-in, the loss report and CAMARA answer.

An attacker who learns which numbers are live simkeep lines (and which are locked, suspended or recycled)
has a target list for SIM-swap fraud. Each endpoint that takes a number must answer a known number with a
wrong secret exactly as it answers an unknown number: the same status, the same body (the number itself
aside), and the same work. Work is compared by counting what costs time, not by timing: the argon2
password verifications (the only slow step, about 50 ms each) and the SQL statements sent.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from simkeep import security
from simkeep.config import Settings
from simkeep.models import LineStatus
from tests import factories
from tests.replacements.conftest import World
from tests.security.conftest import UNKNOWN_MSISDN, browser, rows, statements


class CountingHasher(PasswordHasher):
    """argon2 as simkeep configures it, counting the verifications."""

    def __init__(self) -> None:
        super().__init__(time_cost=2, memory_cost=19_456, parallelism=1)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        """Verify (raising on a mismatch, as argon2 does), and count it."""
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    """simkeep's password hasher, replaced by one that counts verifications."""
    counting = CountingHasher()
    security._dummy_hash()  # made once with the real hasher, as in service
    monkeypatch.setattr(security, "_hasher", lambda: counting)
    return counting


def verifications(hasher: CountingHasher, call: Any) -> tuple[Any, int]:
    """What ``call`` returns and how many passwords it verified."""
    start = hasher.verifications
    result = call()
    return result, hasher.verifications - start


def same_shape(a: str, b: str, *swap: tuple[str, str]) -> bool:
    """Whether two bodies are equal once the numbers asked about are replaced by one placeholder."""
    for left, right in swap:
        a, b = a.replace(left, "N"), b.replace(right, "N")
    strip = re.compile(r"[0-9a-f]{32,}|[A-Za-z0-9_-]{40,}")  # request ids and CSRF tokens differ per page
    return strip.sub("T", a) == strip.sub("T", b)


def _line_token(client: TestClient, msisdn: str, password: str) -> Any:
    return client.post("/api/v1/auth/line/token", json={"msisdn": msisdn, "service_password": password})


class TestLineSignIn:
    """The API's sign-in with the number and service password."""

    def test_known_unknown_and_recycled_numbers_answer_alike(
        self, world: World, db: Session, settings: Settings, hasher: CountingHasher
    ) -> None:
        """A wrong password on a live line, on a recycled line, and any password on an unknown number:
        the same 403 body and one argon2 verification each; no token is issued."""
        recycled = factories.holder(db, settings, name="王芳", document="44030419900101002X")
        recycled.line.status = LineStatus.RECYCLED
        db.flush()
        answers = {}
        for name, number in (
            ("known", world.holder.msisdn),
            ("recycled", recycled.msisdn),
            ("unknown", UNKNOWN_MSISDN),
        ):
            r, cost = verifications(hasher, lambda n=number: _line_token(world.client, n, "wrong-Pass-1"))
            answers[name] = (r.status_code, r.json()["code"], r.json()["detail"], cost)
        assert answers["known"] == answers["recycled"] == answers["unknown"]
        assert (answers["known"][0], answers["known"][3]) == (403, 1)

    def test_password_lock_does_not_reveal_the_number(
        self, world: World, db: Session, hasher: CountingHasher
    ) -> None:
        """Six wrong passwords on a live number and on an unknown number end alike: the sixth answer has
        the same status and code and costs the same argon2 work, so the lock does not reveal which numbers
        exist. (The holder is still told of the lock through their registered contacts.)"""
        sixth = {}
        for name, number in (("known", world.holder.msisdn), ("unknown", UNKNOWN_MSISDN)):
            for _ in range(5):
                _line_token(world.client, number, "wrong-Pass-1")
            r, cost = verifications(hasher, lambda n=number: _line_token(world.client, n, "wrong-Pass-1"))
            sixth[name] = (r.status_code, r.json()["code"], cost)
        assert sixth["known"] == sixth["unknown"]

    def test_known_and_unknown_numbers_do_the_same_database_work(
        self, world: World, db: Session, engine: Engine
    ) -> None:
        """A wrong password for a live number and any password for an unknown number send the same number
        of SQL statements, as the CAMARA checks do (tests/camara/test_equal_cost.py)."""
        counts = {}
        for name, number in (("known", world.holder.msisdn), ("unknown", UNKNOWN_MSISDN)):
            with statements(engine) as sent:
                r = _line_token(world.client, number, "wrong-Pass-1")
            counts[name] = (r.status_code, len(sent))
        assert counts["known"] == counts["unknown"], counts


class TestPortalSignIn:
    """The portal's first sign-in step (number and service password, then a code is sent)."""

    def test_known_and_unknown_numbers_show_the_same_page(
        self, world: World, db: Session, settings: Settings, hasher: CountingHasher
    ) -> None:
        """A wrong password for a live number and an unknown number: the same page with the same message
        (the number aside), one argon2 verification each, and no code sent for either."""
        pages = {}
        before = rows(db, "proof_attempts", "audit_log")
        for name, number in (("known", world.holder.msisdn), ("unknown", UNKNOWN_MSISDN)):
            token = browser(world.client, settings)
            form = {"csrf": token, "msisdn": number, "password": "wrong-Pass-1", "channel": "email"}
            r, cost = verifications(
                hasher, lambda f=form: world.client.post("/portal/sign-in", data=f, follow_redirects=False)
            )
            pages[name] = (r.status_code, r.text, cost)
        assert pages["known"][0] == pages["unknown"][0] == 422
        assert pages["known"][2] == pages["unknown"][2] == 1
        assert same_shape(pages["known"][1], pages["unknown"][1], (world.holder.msisdn, UNKNOWN_MSISDN))
        assert rows(db, "proof_attempts", "audit_log") == before


class TestStaffSignIn:
    """Staff sign-in, through the API and the console."""

    def test_unknown_user_and_wrong_password_answer_alike(
        self, world: World, db: Session, settings: Settings, hasher: CountingHasher
    ) -> None:
        """An unknown user name and a real one with a wrong password: the same API answer and console
        page, one argon2 verification each."""
        from simkeep.models import StaffUser

        real = db.query(StaffUser).filter_by(role="admin").one().username
        api = {}
        console = {}
        for name, username in (("real", real), ("unknown", "nobody-here")):
            r, cost = verifications(
                hasher,
                lambda u=username: world.client.post(
                    "/api/v1/auth/staff/token", json={"username": u, "password": "wrong-Pass-1"}
                ),
            )
            api[name] = (r.status_code, r.json()["code"], r.json()["detail"], cost)
            token = browser(world.client, settings)
            page, cost = verifications(
                hasher,
                lambda u=username, t=token: world.client.post(
                    "/console/sign-in", data={"csrf": t, "username": u, "password": "wrong-Pass-1"}
                ),
            )
            console[name] = (page.status_code, page.text.replace(username, "U"), cost)
        assert api["real"] == api["unknown"]
        assert api["real"][0] == 401
        assert api["real"][3] == 1
        assert console["real"][0] == console["unknown"][0] == 422
        assert console["real"][2] == console["unknown"][2] == 1
        assert same_shape(console["real"][1], console["unknown"][1])


class TestLossReport:
    """The loss report, open to anyone who knows the number and the holder's name."""

    def test_portal_answers_a_wrong_name_like_an_unknown_number(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """On the portal, a live number with a wrong name and an unknown number give the same page (the
        number aside); neither suspends anything."""
        pages = {}
        for name, number in (("known", world.holder.msisdn), ("unknown", UNKNOWN_MSISDN)):
            token = browser(world.client, settings)
            r = world.client.post(
                "/portal/loss-report",
                data={"csrf": token, "msisdn": number, "real_name": "王小明", "reason": "stolen"},
                follow_redirects=False,
            )
            pages[name] = (r.status_code, r.text)
        assert pages["known"][0] == pages["unknown"][0] == 422
        assert same_shape(pages["known"][1], pages["unknown"][1], (world.holder.msisdn, UNKNOWN_MSISDN))
        db.expire_all()
        assert world.holder.line.status == LineStatus.ACTIVE

    def test_api_does_the_same_work_for_a_wrong_name_and_an_unknown_number(
        self, world: World, db: Session, engine: Engine
    ) -> None:
        """Through the API, a wrong name for a live number and an unknown number send the same number of
        SQL statements and give the same answer (CONVENTIONS: unknown numbers cost the same time as known
        ones)."""
        answers = {}
        for name, number in (("known", world.holder.msisdn), ("unknown", UNKNOWN_MSISDN)):
            body = {"msisdn": number, "real_name": "王小明", "reason": "lost"}
            with statements(engine) as sent:
                r = world.client.post("/api/v1/loss-reports", json=body)
            answers[name] = (r.status_code, r.json()["code"], r.json()["detail"], len(sent))
        assert answers["known"] == answers["unknown"], answers


class TestCamara:
    """The CAMARA endpoints, before a relying party has authenticated."""

    @pytest.mark.parametrize(
        "path", ["/sim-swap/v2/check", "/sim-swap/v2/retrieve-date", "/number-recycling/v0.2/check"]
    )
    def test_unauthenticated_calls_answer_alike(self, world: World, db: Session, path: str) -> None:
        """Without a token, or with a forged one, a live number and an unknown one get the same 401 body:
        nothing about the number is looked at before the caller is known."""
        for headers in ({}, {"Authorization": "Bearer forged.token.value"}):
            bodies = []
            for number in (world.holder.msisdn, UNKNOWN_MSISDN):
                r = world.client.post(
                    path,
                    json={"phoneNumber": number, "specifiedDate": "2024-01-01"},
                    headers={**headers, "x-correlator": "c-1"},
                )
                bodies.append((r.status_code, r.json()))
            assert bodies[0] == bodies[1]
            assert bodies[0][0] == 401
