"""One-time codes: six random digits to a registered contact, stored as an HMAC, short-lived and single use.

Codes are asked for through ``POST /api/v1/one-time-codes`` and used here to turn the SIM-change lock off
(purpose ``lock.off``), an action that takes the signed-in session plus a code.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.models import AuditEntry, OneTimeCode, StaffRole
from simkeep.notifications.transports import read_outbox
from tests import factories
from tests.helpers import line_headers, snapshot, staff_headers
from tests.online import last_code, request_code

CODES = "/api/v1/one-time-codes"
CONTACT_PHONE = "+8613912340077"
#: Tables a refused code request may not touch either (bearer tokens come from signing in).
UNTOUCHED = ("auth_tokens",)
#: What a wrong code legitimately changes: the failed proof, its audit entry and the code's try counter.
FAILED_PROOF_TABLES = ("auth_tokens", "proof_attempts", "audit_log", "one_time_codes")


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The test settings, with any overrides a test names by indirect parametrisation."""
    overrides: dict[str, object] = getattr(request, "param", {})
    return settings.model_copy(update=overrides)


@pytest.fixture
def holder(db: Session, settings: Settings) -> factories.Holder:
    """A holder with a registered e-mail address and a contact phone other than the line."""
    h = factories.holder(db, settings)
    h.subscriber.contact_phone = CONTACT_PHONE
    db.flush()
    return h


@pytest.fixture
def headers(client: TestClient, holder: factories.Holder) -> dict[str, str]:
    """The holder, signed in with the service password."""
    return line_headers(client, holder.msisdn)


def _ask(
    client: TestClient, headers: dict[str, str], purpose: str = "lock.off", channel: str = "email"
) -> Response:
    return client.post(CODES, headers=headers, json={"purpose": purpose, "channel": channel})


def _lock(db: Session, holder: factories.Holder) -> None:
    holder.line.sim_change_lock = True
    db.flush()


def _unlock(client: TestClient, headers: dict[str, str], holder: factories.Holder, code: str) -> Response:
    return client.put(
        f"/api/v1/lines/{holder.msisdn}/sim-change-lock",
        headers=headers,
        json={"on": False, "one_time_code": code},
    )


def _is_locked(db: Session, holder: factories.Holder) -> bool:
    db.expire_all()
    return holder.line.sim_change_lock


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _codes(db: Session) -> list[OneTimeCode]:
    db.expire_all()
    return list(db.query(OneTimeCode).order_by(OneTimeCode.id))


def _age(db: Session, by: timedelta) -> None:
    """Move every code's clock back by ``by``, as if it had been sent that much earlier."""
    for row in _codes(db):
        row.created_at -= by
        row.expires_at -= by
    db.flush()


def _otp_messages(outbox: Path) -> list[tuple[str, str]]:
    return [(m.channel, m.to) for m in read_outbox(outbox) if m.template == "otp"]


class TestSendingCodes:
    """``POST /api/v1/one-time-codes``: where a code goes, how it is kept, how often one is sent."""

    def test_code_is_six_digits_sent_to_the_registered_email(
        self, client: TestClient, headers: dict[str, str], holder: factories.Holder, outbox: Path
    ) -> None:
        """A code of six digits goes by e-mail to the holder's address; the answer shows it masked only."""
        r = _ask(client, headers)
        assert r.status_code == 201, r.text
        body = r.json()
        email = holder.subscriber.contact_email
        assert email is not None
        assert _otp_messages(outbox) == [("email", email)]
        assert re.fullmatch(r"\d{6}", last_code(outbox))
        assert body["channel"] == "email"
        assert body["sent_to"] != email
        assert body["sent_to"].endswith("@example.org")

    def test_code_is_valid_for_five_minutes(
        self, client: TestClient, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """The answer says the code works for five minutes from now."""
        before = utcnow()
        r = _ask(client, headers)
        expires = datetime.fromisoformat(r.json()["expires_at"])
        assert before + timedelta(minutes=5) <= expires <= utcnow() + timedelta(minutes=5)

    def test_code_goes_by_sms_to_the_contact_phone(
        self, client: TestClient, headers: dict[str, str], holder: factories.Holder, outbox: Path
    ) -> None:
        """Asked for by SMS, the code goes to the registered contact phone, not to the line."""
        r = _ask(client, headers, channel="sms")
        assert r.status_code == 201, r.text
        assert _otp_messages(outbox) == [("sms", CONTACT_PHONE)]
        assert CONTACT_PHONE not in r.text

    def test_contact_phone_that_is_the_line_itself_does_not_count(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A contact phone equal to the line's own number is no contact: OTP_NO_CONTACT, nothing sent."""
        holder.subscriber.contact_phone = holder.msisdn
        db.flush()
        before = snapshot(db, exclude=UNTOUCHED)
        r = _ask(client, headers, channel="sms")
        assert (r.status_code, r.json()["code"]) == (422, "OTP_NO_CONTACT")
        assert read_outbox(outbox) == []
        assert snapshot(db, exclude=UNTOUCHED) == before

    def test_no_email_registered_is_refused(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """Asking for an e-mail code with no address registered is OTP_NO_CONTACT and changes nothing."""
        holder.subscriber.contact_email = None
        db.flush()
        before = snapshot(db, exclude=UNTOUCHED)
        r = _ask(client, headers, channel="email")
        assert (r.status_code, r.json()["code"]) == (422, "OTP_NO_CONTACT")
        assert read_outbox(outbox) == []
        assert snapshot(db, exclude=UNTOUCHED) == before

    def test_code_is_stored_only_as_a_keyed_hash(
        self, client: TestClient, db: Session, headers: dict[str, str], outbox: Path
    ) -> None:
        """The database holds a 64-hex-digit HMAC of the code: not the code, nor a plain hash of it."""
        code = request_code(client, headers, outbox, purpose="lock.off")
        [row] = _codes(db)
        assert re.fullmatch(r"[0-9a-f]{64}", row.code_hmac)
        plain_hashes = {hashlib.new(name, code.encode()).hexdigest() for name in ("sha256", "sha1", "md5")}
        assert row.code_hmac not in plain_hashes
        stored = [getattr(row, c.key) for c in OneTimeCode.__table__.columns]
        assert code not in [str(v) for v in stored]
        sent = db.query(AuditEntry).filter_by(action="otp.sent").one()
        assert code not in json.dumps(sent.data)

    def test_sixth_code_within_an_hour_is_refused(
        self, client: TestClient, db: Session, headers: dict[str, str], outbox: Path
    ) -> None:
        """Five codes an hour are sent; the sixth is OTP_RATE_LIMITED, and no code is made or sent."""
        for _ in range(5):
            assert _ask(client, headers).status_code == 201
        before = snapshot(db, exclude=UNTOUCHED)
        r = _ask(client, headers, purpose="contact.change")
        assert (r.status_code, r.json()["code"]) == (429, "OTP_RATE_LIMITED")
        assert len(_otp_messages(outbox)) == 5
        assert snapshot(db, exclude=UNTOUCHED) == before

    def test_rate_limit_counts_the_last_hour_only(
        self, client: TestClient, db: Session, headers: dict[str, str], outbox: Path
    ) -> None:
        """Codes sent more than an hour ago no longer count toward the limit."""
        for _ in range(5):
            assert _ask(client, headers).status_code == 201
        _age(db, timedelta(minutes=61))
        assert _ask(client, headers).status_code == 201
        assert len(_otp_messages(outbox)) == 6

    def test_reset_codes_are_not_asked_for_here(
        self, client: TestClient, db: Session, headers: dict[str, str], outbox: Path
    ) -> None:
        """A signed-in holder cannot ask for a password-reset code here (VALIDATION_FAILED, nothing sent)."""
        before = snapshot(db, exclude=UNTOUCHED)
        r = _ask(client, headers, purpose="password.reset")
        assert (r.status_code, r.json()["code"]) == (422, "VALIDATION_FAILED")
        assert read_outbox(outbox) == []
        assert snapshot(db, exclude=UNTOUCHED) == before

    @pytest.mark.parametrize(
        "body",
        [
            {"purpose": "anything", "channel": "email"},
            {"purpose": "lock.off", "channel": "voice"},
            {"purpose": "lock.off"},
            {"purpose": "lock.off", "channel": "email", "to": "someone@example.org"},
        ],
    )
    def test_malformed_request_is_refused(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        outbox: Path,
        body: dict[str, str],
    ) -> None:
        """An unknown purpose or channel, a missing field or an address of one's own: VALIDATION_FAILED."""
        before = snapshot(db, exclude=UNTOUCHED)
        r = client.post(CODES, headers=headers, json=body)
        assert (r.status_code, r.json()["code"]) == (422, "VALIDATION_FAILED")
        assert read_outbox(outbox) == []
        assert snapshot(db, exclude=UNTOUCHED) == before

    def test_needs_a_signed_in_holder(
        self, client: TestClient, db: Session, holder: factories.Holder, outbox: Path
    ) -> None:
        """Without a holder's session (none, or a staff user's) no code is sent: LINE_SIGN_IN_REQUIRED."""
        clerk = factories.staff(db, StaffRole.CLERK, store_row=factories.store(db))
        staff = staff_headers(client, clerk.username)
        before = snapshot(db, exclude=UNTOUCHED)
        for headers in ({}, staff):
            r = _ask(client, headers)
            assert (r.status_code, r.json()["code"]) == (401, "LINE_SIGN_IN_REQUIRED")
        assert read_outbox(outbox) == []
        assert snapshot(db, exclude=UNTOUCHED) == before


class TestUsingCodes:
    """A code proves the holder once, for its own action, within five minutes and five tries."""

    def test_right_code_works(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """The code sent for ``lock.off`` lets the signed-in holder turn the lock off."""
        _lock(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        r = _unlock(client, headers, holder, code)
        assert r.status_code == 200, r.text
        assert not _is_locked(db, holder)

    def test_code_works_only_once(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A code that was used is refused the second time (PROOF_FAILED)."""
        _lock(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        assert _unlock(client, headers, holder, code).status_code == 200
        _lock(db, holder)
        r = _unlock(client, headers, holder, code)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _is_locked(db, holder)

    def test_wrong_code_is_refused_and_changes_nothing(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A wrong code is PROOF_FAILED; only the failed proof is recorded."""
        _lock(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        before = snapshot(db, exclude=FAILED_PROOF_TABLES)
        r = _unlock(client, headers, holder, _wrong(code))
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert snapshot(db, exclude=FAILED_PROOF_TABLES) == before
        assert _is_locked(db, holder)

    def test_code_expires_after_five_minutes(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A code sent five minutes and a second ago is refused (PROOF_FAILED)."""
        _lock(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        _age(db, timedelta(minutes=5, seconds=1))
        r = _unlock(client, headers, holder, code)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _is_locked(db, holder)

    def test_code_still_works_just_before_five_minutes(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A code sent four minutes and fifty seconds ago still works."""
        _lock(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        _age(db, timedelta(minutes=4, seconds=50))
        assert _unlock(client, headers, holder, code).status_code == 200
        assert not _is_locked(db, holder)

    def test_code_is_bound_to_its_purpose(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A code asked for changing contacts cannot turn the lock off."""
        _lock(db, holder)
        code = request_code(client, headers, outbox, purpose="contact.change")
        r = _unlock(client, headers, holder, code)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _is_locked(db, holder)

    def test_code_is_bound_to_its_line(
        self,
        client: TestClient,
        db: Session,
        settings: Settings,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A code sent for one line does not work for another holder's line."""
        other = factories.holder(db, settings)
        other.line.sim_change_lock = True
        db.flush()
        code = request_code(client, headers, outbox, purpose="lock.off")
        r = _unlock(client, line_headers(client, other.msisdn), other, code)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _is_locked(db, other)

    def test_new_code_retires_the_earlier_one(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """Once a second code is sent for the same action, the first no longer works."""
        _lock(db, holder)
        first = request_code(client, headers, outbox, purpose="lock.off")
        second = request_code(client, headers, outbox, purpose="lock.off")
        if first == second:
            pytest.skip("the two random codes happen to be equal")
        r = _unlock(client, headers, holder, first)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _is_locked(db, holder)

    # The line's self-service lock (five failed proofs) would otherwise refuse the sixth try before the code
    # is looked at; raising it shows the code's own lock.
    @pytest.mark.parametrize("settings", [{"failed_proofs_before_lock": 50}], indirect=True)
    def test_five_wrong_tries_lock_the_code(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """After five wrong tries even the right code is refused (PROOF_FAILED)."""
        _lock(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        for _ in range(5):
            assert _unlock(client, headers, holder, _wrong(code)).status_code == 403
        r = _unlock(client, headers, holder, code)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _is_locked(db, holder)

    def test_four_wrong_tries_leave_the_code_usable(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """Four wrong tries do not lock the code; the right one then works."""
        _lock(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        for _ in range(4):
            assert _unlock(client, headers, holder, _wrong(code)).status_code == 403
        assert _unlock(client, headers, holder, code).status_code == 200
        assert not _is_locked(db, holder)
