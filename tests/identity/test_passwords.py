"""The service password: argon2 hashes, change, reset by one-time code, the policy, the lock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.masking import mask_email, mask_msisdn
from simkeep.models import LineStatus, Notification, ProofAttempt, Subscriber
from simkeep.notifications.transports import read_outbox
from tests import factories
from tests.helpers import line_headers, snapshot
from tests.online import last_code, request_code

CHANGE = "/api/v1/auth/password"
RESET = "/api/v1/auth/password-reset"
COMPLETE = "/api/v1/auth/password-reset/complete"
SIGN_IN = "/api/v1/auth/line/token"
NEW = "Blue-Heron-Lake"
CONTACT_PHONE = "+8613912340088"
#: A refusal may record a failed proof (and its audit entry); signing in adds tokens.
PROOF_TABLES = ("auth_tokens", "proof_attempts", "audit_log")
# factories.DOCUMENT (11010519491231002X) gives the birth date 1949-12-31.


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


def _sign_in(client: TestClient, msisdn: str, password: str) -> Response:
    return client.post(SIGN_IN, json={"msisdn": msisdn, "service_password": password})


def _change(
    client: TestClient,
    headers: dict[str, str],
    *,
    old: str = factories.PASSWORD,
    document: str = factories.DOCUMENT,
    new: str = NEW,
) -> Response:
    return client.post(
        CHANGE, headers=headers, json={"old_password": old, "document_number": document, "new_password": new}
    )


def _start_reset(
    client: TestClient, msisdn: str, document: str = factories.DOCUMENT, channel: str = "email"
) -> Response:
    return client.post(RESET, json={"msisdn": msisdn, "document_number": document, "channel": channel})


def _complete(
    client: TestClient, msisdn: str, code: str, *, document: str = factories.DOCUMENT, new: str = NEW
) -> Response:
    return client.post(
        COMPLETE,
        json={"msisdn": msisdn, "document_number": document, "one_time_code": code, "new_password": new},
    )


def _hash_of(db: Session, holder: factories.Holder) -> str | None:
    db.expire_all()
    sub = db.get(Subscriber, holder.subscriber.id)
    assert sub is not None
    return sub.service_password_hash


def _messages(outbox: Path, template: str) -> list[tuple[str, str]]:
    """Messages sent at once (one-time codes): (channel, address)."""
    return [(m.channel, m.to) for m in read_outbox(outbox) if m.template == template]


def _alerts(db: Session, holder: factories.Holder, template: str) -> list[tuple[str, str]]:
    """Messages to the holder with ``template``, sent or queued for sending: (channel, masked address)."""
    db.expire_all()
    rows = db.query(Notification).filter_by(subscriber_id=holder.subscriber.id, template=template)
    return sorted((n.channel, n.destination_masked) for n in rows)


def _contacts(holder: factories.Holder) -> list[tuple[str, str]]:
    """The holder's registered contacts as :func:`_alerts` shows them."""
    email = holder.subscriber.contact_email
    assert email is not None
    return [("email", mask_email(email)), ("sms", mask_msisdn(CONTACT_PHONE))]


def _wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _age_proofs(db: Session, by: timedelta) -> None:
    """Move every recorded proof back by ``by``."""
    db.expire_all()
    for attempt in db.query(ProofAttempt):
        attempt.attempted_at -= by
    db.flush()


class TestChangePassword:
    """``POST /api/v1/auth/password``: the signed-in holder, with the old password and the document number."""

    def test_change_sets_an_argon2_hash_of_the_new_password(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """The new password signs in, the old one no longer does, and only an argon2id hash is stored."""
        assert _change(client, headers).status_code == 204
        stored = _hash_of(db, holder)
        assert stored is not None
        assert stored.startswith("$argon2id$")
        assert NEW not in stored
        assert _sign_in(client, holder.msisdn, NEW).status_code == 200
        assert _sign_in(client, holder.msisdn, factories.PASSWORD).status_code == 403

    def test_change_ends_every_session(
        self, client: TestClient, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """Sessions opened with the old password stop working (INVALID_TOKEN)."""
        other_session = line_headers(client, holder.msisdn)
        assert _change(client, headers).status_code == 204
        for h in (headers, other_session):
            r = client.get(f"/api/v1/lines/{holder.msisdn}", headers=h)
            assert (r.status_code, r.json()["code"]) == (401, "INVALID_TOKEN")

    def test_change_tells_the_holder(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """The holder's registered contacts (never the line) get a "password changed" message."""
        assert _change(client, headers).status_code == 204
        assert _alerts(db, holder, "password_changed") == _contacts(holder)

    def test_wrong_old_password_is_refused(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """A wrong old password is PROOF_FAILED; the password and the sessions stay as they were."""
        before = snapshot(db, exclude=PROOF_TABLES)
        r = _change(client, headers, old="not-the-password")
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert snapshot(db, exclude=PROOF_TABLES) == before
        assert client.get(f"/api/v1/lines/{holder.msisdn}", headers=headers).status_code == 200

    def test_wrong_document_number_is_refused(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """The right old password with another document number is PROOF_FAILED and changes nothing."""
        before = snapshot(db, exclude=PROOF_TABLES)
        r = _change(client, headers, document="110105194912310021")
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert snapshot(db, exclude=PROOF_TABLES) == before
        assert _sign_in(client, holder.msisdn, factories.PASSWORD).status_code == 200

    def test_document_number_is_required(
        self, client: TestClient, db: Session, headers: dict[str, str]
    ) -> None:
        """Without the document number the request is VALIDATION_FAILED and changes nothing."""
        before = snapshot(db, exclude=PROOF_TABLES)
        r = client.post(
            CHANGE, headers=headers, json={"old_password": factories.PASSWORD, "new_password": NEW}
        )
        assert (r.status_code, r.json()["code"]) == (422, "VALIDATION_FAILED")
        assert snapshot(db, exclude=PROOF_TABLES) == before

    def test_needs_a_signed_in_holder(
        self, client: TestClient, db: Session, holder: factories.Holder
    ) -> None:
        """Without a session nobody can change a password (LINE_SIGN_IN_REQUIRED)."""
        before = snapshot(db, exclude=PROOF_TABLES)
        r = _change(client, {})
        assert (r.status_code, r.json()["code"]) == (401, "LINE_SIGN_IN_REQUIRED")
        assert snapshot(db, exclude=PROOF_TABLES) == before


class TestPasswordPolicy:
    """New passwords guessable from what is known about the holder are refused with PASSWORD_WEAK."""

    @pytest.mark.parametrize(
        ("password", "reason"),
        [
            ("19491231", "BIRTH_DATE"),
            ("pw491231", "BIRTH_DATE"),
            ("31121949", "BIRTH_DATE"),
            ("31.12.1949", "BIRTH_DATE"),
            ("12/31/1949", "BIRTH_DATE"),
            ("31002X", "DOCUMENT"),
            ("31002x", "DOCUMENT"),
            ("id110105", "DOCUMENT"),
            ("231002-777", "DOCUMENT"),
            ("abc12", "LENGTH"),
            ("123456", "TRIVIAL"),
            ("aaaaaaaa", "TRIVIAL"),
        ],
    )
    def test_guessable_password_is_refused(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        password: str,
        reason: str,
    ) -> None:
        """Birth date (any order, any separators), ID-number digits, too short or trivial: PASSWORD_WEAK."""
        before = snapshot(db, exclude=PROOF_TABLES)
        r = _change(client, headers, new=password)
        assert (r.status_code, r.json()["code"]) == (422, "PASSWORD_WEAK")
        assert r.json()["details"]["reason"] == reason
        assert snapshot(db, exclude=PROOF_TABLES) == before
        assert _sign_in(client, holder.msisdn, factories.PASSWORD).status_code == 200

    @pytest.mark.parametrize("shape", ["{national}", "tel{last8}", "{last6}-999"])
    def test_phone_number_is_refused(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        shape: str,
    ) -> None:
        """The line's number, or six of its digits in a row, is PASSWORD_WEAK (PHONE_NUMBER)."""
        national = holder.msisdn.removeprefix("+86")
        password = shape.format(national=national, last8=national[-8:], last6=national[-6:])
        before = snapshot(db, exclude=PROOF_TABLES)
        r = _change(client, headers, new=password)
        assert (r.status_code, r.json()["code"]) == (422, "PASSWORD_WEAK")
        assert r.json()["details"]["reason"] == "PHONE_NUMBER"
        assert snapshot(db, exclude=PROOF_TABLES) == before

    def test_weak_password_in_a_reset_keeps_the_code(
        self, client: TestClient, db: Session, holder: factories.Holder, outbox: Path
    ) -> None:
        """A reset with a weak password is refused and changes nothing: the same code then works."""
        assert _start_reset(client, holder.msisdn).status_code == 202
        code = last_code(outbox)
        stored = _hash_of(db, holder)
        r = _complete(client, holder.msisdn, code, new="19491231")
        assert (r.status_code, r.json()["code"]) == (422, "PASSWORD_WEAK")
        assert _hash_of(db, holder) == stored
        assert _complete(client, holder.msisdn, code).status_code == 204
        assert _sign_in(client, holder.msisdn, NEW).status_code == 200


class TestPasswordReset:
    """Forgotten password: a code to a registered contact plus the document number."""

    def test_reset_with_code_and_document_sets_the_password(
        self, client: TestClient, db: Session, holder: factories.Holder, outbox: Path
    ) -> None:
        """The code goes to the e-mail address; with it and the document number the new password is set."""
        assert _start_reset(client, holder.msisdn).status_code == 202
        email = holder.subscriber.contact_email
        assert email is not None
        assert _messages(outbox, "otp") == [("email", email)]
        assert _complete(client, holder.msisdn, last_code(outbox)).status_code == 204
        stored = _hash_of(db, holder)
        assert stored is not None
        assert stored.startswith("$argon2id$")
        assert _sign_in(client, holder.msisdn, NEW).status_code == 200
        assert _sign_in(client, holder.msisdn, factories.PASSWORD).status_code == 403

    def test_reset_tells_the_holder_and_ends_sessions(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """After a reset the holder gets a "password changed" message and old sessions end."""
        _start_reset(client, holder.msisdn)
        assert _complete(client, holder.msisdn, last_code(outbox)).status_code == 204
        assert _alerts(db, holder, "password_changed") == _contacts(holder)
        r = client.get(f"/api/v1/lines/{holder.msisdn}", headers=headers)
        assert (r.status_code, r.json()["code"]) == (401, "INVALID_TOKEN")

    def test_reset_code_can_go_by_sms_to_the_contact_phone(
        self, client: TestClient, holder: factories.Holder, outbox: Path
    ) -> None:
        """Asked for by SMS, the reset code goes to the contact phone."""
        assert _start_reset(client, holder.msisdn, channel="sms").status_code == 202
        assert _messages(outbox, "otp") == [("sms", CONTACT_PHONE)]

    def test_reset_code_never_goes_to_the_line(
        self, client: TestClient, db: Session, holder: factories.Holder, outbox: Path
    ) -> None:
        """With the line's own number as the only phone, an SMS reset sends nothing at all."""
        holder.subscriber.contact_phone = holder.msisdn
        db.flush()
        r = _start_reset(client, holder.msisdn, channel="sms")
        assert r.status_code == 202
        assert read_outbox(outbox) == []

    def test_start_answers_the_same_whatever_the_details(
        self, client: TestClient, db: Session, settings: Settings, holder: factories.Holder, outbox: Path
    ) -> None:
        """Matching details, a wrong document, an unknown or a recycled number: one answer; one code sent."""
        recycled = factories.holder(db, settings)
        recycled.line.status = LineStatus.RECYCLED
        db.flush()
        answers = [
            _start_reset(client, holder.msisdn),
            _start_reset(client, holder.msisdn, document="110105194912310021"),
            _start_reset(client, "+8613912345678"),
            _start_reset(client, recycled.msisdn),
        ]
        assert {(r.status_code, r.text) for r in answers} == {(answers[0].status_code, answers[0].text)}
        assert answers[0].status_code == 202
        assert len(_messages(outbox, "otp")) == 1

    def test_start_with_wrong_document_sends_nothing(
        self, client: TestClient, db: Session, holder: factories.Holder, outbox: Path
    ) -> None:
        """A wrong document number sends no code and changes no data (the failed proof is recorded)."""
        before = snapshot(db, exclude=PROOF_TABLES)
        assert _start_reset(client, holder.msisdn, document="110105194912310021").status_code == 202
        assert read_outbox(outbox) == []
        assert snapshot(db, exclude=PROOF_TABLES) == before
        db.expire_all()
        assert db.query(ProofAttempt).filter_by(line_id=holder.line.id, passed=False).count() == 1

    def test_start_answers_the_same_when_codes_are_rate_limited(
        self, client: TestClient, holder: factories.Holder, outbox: Path
    ) -> None:
        """Past the hourly limit of codes the answer is still the same, so it shows no details matched."""
        answers = [_start_reset(client, holder.msisdn) for _ in range(6)]
        assert {(r.status_code, r.text) for r in answers} == {(answers[0].status_code, answers[0].text)}
        assert len(_messages(outbox, "otp")) == 5

    def test_start_answers_the_same_when_self_service_is_locked(
        self, client: TestClient, db: Session, holder: factories.Holder, outbox: Path
    ) -> None:
        """A line locked by failed proofs (wrong codes) gets the same answer as any other, and no code."""
        for _ in range(5):
            db.add(
                ProofAttempt(
                    line_id=holder.line.id,
                    method="one_time_code",
                    action="lock.off",
                    passed=False,
                    actor="test",
                    detail="wrong or expired code",
                )
            )
        db.flush()
        first = _start_reset(client, "+8613912345678")
        locked = _start_reset(client, holder.msisdn)
        assert (locked.status_code, locked.text) == (first.status_code, first.text)
        assert _messages(outbox, "otp") == []

    def test_malformed_start_is_refused(
        self, client: TestClient, db: Session, holder: factories.Holder
    ) -> None:
        """A start without a channel is VALIDATION_FAILED and sends nothing."""
        before = snapshot(db, exclude=PROOF_TABLES)
        r = client.post(RESET, json={"msisdn": holder.msisdn, "document_number": factories.DOCUMENT})
        assert (r.status_code, r.json()["code"]) == (422, "VALIDATION_FAILED")
        assert snapshot(db, exclude=PROOF_TABLES) == before

    def test_complete_with_wrong_code_is_refused(
        self, client: TestClient, db: Session, holder: factories.Holder, outbox: Path
    ) -> None:
        """A wrong code is PROOF_FAILED; the password stays."""
        _start_reset(client, holder.msisdn)
        before = snapshot(db, exclude=(*PROOF_TABLES, "one_time_codes"))
        r = _complete(client, holder.msisdn, _wrong_code(last_code(outbox)))
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert snapshot(db, exclude=(*PROOF_TABLES, "one_time_codes")) == before
        assert _sign_in(client, holder.msisdn, factories.PASSWORD).status_code == 200

    def test_complete_with_wrong_document_is_refused(
        self, client: TestClient, db: Session, holder: factories.Holder, outbox: Path
    ) -> None:
        """The right code with another document number is PROOF_FAILED; the password stays."""
        _start_reset(client, holder.msisdn)
        stored = _hash_of(db, holder)
        r = _complete(client, holder.msisdn, last_code(outbox), document="110105194912310021")
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _hash_of(db, holder) == stored

    def test_complete_with_a_code_for_another_action_is_refused(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder, outbox: Path
    ) -> None:
        """A code asked for in a session (here for changing contacts) cannot reset the password."""
        code = request_code(client, headers, outbox, purpose="contact.change")
        stored = _hash_of(db, holder)
        r = _complete(client, holder.msisdn, code)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _hash_of(db, holder) == stored

    def test_complete_for_an_unknown_number_is_refused(self, client: TestClient, db: Session) -> None:
        """An unknown number is PROOF_FAILED, like wrong details, and changes no data."""
        before = snapshot(db, exclude=PROOF_TABLES)
        r = _complete(client, "+8613912345678", "123456")
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert snapshot(db, exclude=PROOF_TABLES) == before


# The self-service lock (five failed proofs an hour) would otherwise answer first; raising it shows the
# password lock on its own.
ISOLATED = pytest.mark.parametrize("settings", [{"failed_proofs_before_lock": 50}], indirect=True)


class TestPasswordLock:
    """Five wrong passwords in 15 minutes lock password use for the line and alert the holder."""

    def test_five_wrong_passwords_refuse_the_right_one(
        self, client: TestClient, holder: factories.Holder
    ) -> None:
        """After five wrong passwords, signing in with the right one is refused like a wrong one (403)."""
        for _ in range(5):
            assert _sign_in(client, holder.msisdn, "guess-guess").status_code == 403
        r = _sign_in(client, holder.msisdn, factories.PASSWORD)
        # Wrong passwords have their own lock (15 minutes); they do not lock the rest of self-service. Not
        # signed in, the caller is not told of the lock (it would tell live numbers from unknown ones).
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")

    @ISOLATED
    def test_password_lock_refuses_the_right_password(
        self, client: TestClient, holder: factories.Holder
    ) -> None:
        """The password lock on its own refuses the right password at sign-in, like a wrong one."""
        for _ in range(5):
            assert _sign_in(client, holder.msisdn, "guess-guess").status_code == 403
        r = _sign_in(client, holder.msisdn, factories.PASSWORD)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")

    def test_lock_alerts_the_holder_once(
        self, client: TestClient, db: Session, holder: factories.Holder
    ) -> None:
        """Each of the holder's contacts gets one "password locked" message, however many tries follow."""
        for _ in range(7):
            _sign_in(client, holder.msisdn, "guess-guess")
        assert _alerts(db, holder, "password_locked") == _contacts(holder)

    def test_four_wrong_passwords_do_not_lock(
        self, client: TestClient, db: Session, holder: factories.Holder
    ) -> None:
        """Four wrong passwords leave the right one working, and nobody is alerted."""
        for _ in range(4):
            _sign_in(client, holder.msisdn, "guess-guess")
        assert _sign_in(client, holder.msisdn, factories.PASSWORD).status_code == 200
        assert _alerts(db, holder, "password_locked") == []

    @ISOLATED
    def test_lock_lifts_after_15_minutes(
        self, client: TestClient, db: Session, holder: factories.Holder
    ) -> None:
        """Once the wrong passwords are more than 15 minutes old, the right password works again."""
        for _ in range(5):
            _sign_in(client, holder.msisdn, "guess-guess")
        _age_proofs(db, timedelta(minutes=15, seconds=1))
        assert _sign_in(client, holder.msisdn, factories.PASSWORD).status_code == 200

    @ISOLATED
    def test_only_failures_within_15_minutes_count(
        self, client: TestClient, db: Session, holder: factories.Holder
    ) -> None:
        """Four old failures and one new one are not five in 15 minutes: the right password works."""
        for _ in range(4):
            _sign_in(client, holder.msisdn, "guess-guess")
        _age_proofs(db, timedelta(minutes=16))
        _sign_in(client, holder.msisdn, "guess-guess")
        assert _sign_in(client, holder.msisdn, factories.PASSWORD).status_code == 200

    @ISOLATED
    def test_wrong_old_passwords_in_changes_count(
        self, client: TestClient, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """Wrong old passwords given to change the password count toward the lock like wrong sign-ins."""
        for _ in range(5):
            assert _change(client, headers, old="guess-guess").status_code == 403
        r = _sign_in(client, holder.msisdn, factories.PASSWORD)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _change(client, headers).json()["code"] == "PASSWORD_LOCKED"  # signed in: told of the lock

    @ISOLATED
    def test_lock_refuses_a_change_with_the_right_password(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """While locked, even the right old password cannot change the password; nothing changes."""
        for _ in range(5):
            _sign_in(client, holder.msisdn, "guess-guess")
        before = snapshot(db, exclude=PROOF_TABLES)
        r = _change(client, headers)
        assert (r.status_code, r.json()["code"]) == (423, "PASSWORD_LOCKED")
        assert snapshot(db, exclude=PROOF_TABLES) == before


class TestPasswordLockScope:
    """The password lock is the password's own; it neither spreads nor outlives a new password."""

    def test_wrong_passwords_leave_the_lock_on_switch_usable(
        self, client: TestClient, holder: factories.Holder
    ) -> None:
        """Five wrong passwords (guesses) do not stop the signed-in holder turning the lock on."""
        headers = line_headers(client, holder.msisdn)
        for _ in range(5):
            _sign_in(client, holder.msisdn, "guess-guess")
        r = client.put(f"/api/v1/lines/{holder.msisdn}/sim-change-lock", json={"on": True}, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["sim_change_lock"] is True

    def test_reset_lifts_the_password_lock(
        self, client: TestClient, holder: factories.Holder, outbox: Path
    ) -> None:
        """After a reset with a code and the document, the new password works at once."""
        for _ in range(5):
            _sign_in(client, holder.msisdn, "guess-guess")
        assert _start_reset(client, holder.msisdn).status_code == 202
        code = last_code(outbox)
        r = _complete(client, holder.msisdn, code)
        assert r.status_code == 204, r.text
        assert _sign_in(client, holder.msisdn, NEW).status_code == 200
