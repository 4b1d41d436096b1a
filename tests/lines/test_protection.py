"""What a holder does to protect the line: the SIM-change lock and the registered contacts."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.masking import mask_email, mask_msisdn
from simkeep.models import (
    AuditEntry,
    Notification,
    OneTimeCode,
    ReplacementOrder,
    StaffRole,
    StaffUser,
    Subscriber,
)
from simkeep.notifications.transports import read_outbox
from tests import factories
from tests.helpers import line_headers, snapshot, staff_headers
from tests.online import request_code

CONTACT_PHONE = "+8613912340099"
NEW_EMAIL = "zhang.new@example.net"
NEW_PHONE = "+8613711112222"
#: A refused request may record a failed proof and audit it; signing in adds tokens.
PROOF_TABLES = ("auth_tokens", "proof_attempts", "audit_log")
#: A wrong code also counts a try on the code.
WRONG_CODE_TABLES = (*PROOF_TABLES, "one_time_codes")
#: A SIM change refused by the lock is audited and the holder alerted (notifications and their jobs).
ALERT_TABLES = (*PROOF_TABLES, "notifications", "jobs")
PLACEHOLDER_UPLOADS = {
    "document_number": factories.DOCUMENT,
    "document_photo": "EV-NONE",
    "selfie": "EV-NONE",
}


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


@pytest.fixture
def clerk_user(db: Session) -> StaffUser:
    """A clerk at a store that has SIMs in stock."""
    store = factories.store(db)
    for _ in range(2):
        factories.sim(db, store=store)
    return factories.staff(db, StaffRole.CLERK, store_row=store)


@pytest.fixture
def clerk(client: TestClient, clerk_user: StaffUser) -> dict[str, str]:
    """The clerk, signed in."""
    return staff_headers(client, clerk_user.username)


def _set_lock(
    client: TestClient,
    headers: dict[str, str],
    holder: factories.Holder,
    *,
    on: bool,
    code: str | None = None,
) -> Response:
    body: dict[str, object] = {"on": on}
    if code is not None:
        body["one_time_code"] = code
    return client.put(f"/api/v1/lines/{holder.msisdn}/sim-change-lock", headers=headers, json=body)


def _lock_directly(db: Session, holder: factories.Holder) -> None:
    holder.line.sim_change_lock = True
    db.flush()


def _is_locked(db: Session, holder: factories.Holder) -> bool:
    db.expire_all()
    return holder.line.sim_change_lock


def _alerts(db: Session, holder: factories.Holder, template: str) -> list[tuple[str, str]]:
    """Messages to the holder with ``template``, sent or queued for sending: (channel, masked address)."""
    db.expire_all()
    rows = db.query(Notification).filter_by(subscriber_id=holder.subscriber.id, template=template)
    return sorted((n.channel, n.destination_masked) for n in rows)


def _old_contacts(email: str | None) -> list[tuple[str, str]]:
    """The holder's registered contacts as :func:`_alerts` shows them."""
    assert email is not None
    return [("email", mask_email(email)), ("sms", mask_msisdn(CONTACT_PHONE))]


def _audit(db: Session, holder: factories.Holder, action: str) -> list[AuditEntry]:
    db.expire_all()
    return list(
        db.query(AuditEntry).filter_by(subject_type="line", subject_id=str(holder.line.id), action=action)
    )


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _store_replacement(client: TestClient, clerk: dict[str, str], holder: factories.Holder) -> Response:
    return client.post(
        "/api/v1/replacements",
        headers=clerk,
        json={"msisdn": holder.msisdn, "channel": "store", "in_person_document_number": factories.DOCUMENT},
    )


class TestSimChangeLock:
    """``PUT /api/v1/lines/{msisdn}/sim-change-lock``: on with any session, off only with high assurance."""

    def test_holder_turns_the_lock_on(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """A signed-in holder turns the lock on; the line shows it, it is audited and the holder told."""
        r = _set_lock(client, headers, holder, on=True)
        assert r.status_code == 200, r.text
        assert r.json()["sim_change_lock"] is True
        assert client.get(f"/api/v1/lines/{holder.msisdn}", headers=headers).json()["sim_change_lock"] is True
        assert [e.actor for e in _audit(db, holder, "line.lock_on")] == [f"line:{holder.line.id}"]
        assert _alerts(db, holder, "lock_changed") == _old_contacts(holder.subscriber.contact_email)

    def test_turning_it_on_again_changes_nothing(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """Asking for the lock when it is already on answers with the line and records or sends nothing."""
        assert _set_lock(client, headers, holder, on=True).status_code == 200
        before = snapshot(db, exclude=("auth_tokens",))
        r = _set_lock(client, headers, holder, on=True)
        assert (r.status_code, r.json()["sim_change_lock"]) == (200, True)
        assert snapshot(db, exclude=("auth_tokens",)) == before

    def test_off_without_a_code_is_refused(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """The password session alone is not enough to turn the lock off: ASSURANCE_TOO_LOW, lock stays."""
        _lock_directly(db, holder)
        before = snapshot(db, exclude=("auth_tokens",))
        r = _set_lock(client, headers, holder, on=False)
        assert (r.status_code, r.json()["code"]) == (403, "ASSURANCE_TOO_LOW")
        assert r.json()["details"] == {"needed": "high", "given": "medium"}
        assert snapshot(db, exclude=("auth_tokens",)) == before

    def test_off_with_a_wrong_code_is_refused(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A wrong code is PROOF_FAILED; only the failed proof is recorded and the lock stays on."""
        _lock_directly(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        before = snapshot(db, exclude=WRONG_CODE_TABLES)
        r = _set_lock(client, headers, holder, on=False, code=_wrong(code))
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert snapshot(db, exclude=WRONG_CODE_TABLES) == before

    def test_off_with_a_code_for_another_action_is_refused(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A code asked for a replacement does not turn the lock off (PROOF_FAILED)."""
        _lock_directly(db, holder)
        code = request_code(client, headers, outbox, purpose="replacement.submit")
        r = _set_lock(client, headers, holder, on=False, code=code)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _is_locked(db, holder)

    def test_off_with_session_and_code(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """Password session plus a one-time code turn the lock off; it is audited and the holder told."""
        _lock_directly(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        r = _set_lock(client, headers, holder, on=False, code=code)
        assert (r.status_code, r.json()["sim_change_lock"]) == (200, False)
        assert not _is_locked(db, holder)
        [entry] = _audit(db, holder, "line.lock_off")
        assert set(entry.data["proof"]) == {"service_password", "one_time_code"}
        assert _alerts(db, holder, "lock_changed") == _old_contacts(holder.subscriber.contact_email)

    def test_malformed_code_is_refused(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """A code that is not six digits is VALIDATION_FAILED and changes nothing."""
        _lock_directly(db, holder)
        before = snapshot(db, exclude=("auth_tokens",))
        r = _set_lock(client, headers, holder, on=False, code="12ab56")
        assert (r.status_code, r.json()["code"]) == (422, "VALIDATION_FAILED")
        assert snapshot(db, exclude=("auth_tokens",)) == before

    def test_staff_and_strangers_cannot_set_it(
        self, client: TestClient, db: Session, clerk: dict[str, str], holder: factories.Holder
    ) -> None:
        """Only the holder's session sets the lock: a clerk or no session is LINE_SIGN_IN_REQUIRED."""
        before = snapshot(db, exclude=("auth_tokens",))
        for headers in (clerk, {}):
            r = _set_lock(client, headers, holder, on=True)
            assert (r.status_code, r.json()["code"]) == (401, "LINE_SIGN_IN_REQUIRED")
        assert snapshot(db, exclude=("auth_tokens",)) == before

    def test_another_holders_line_is_not_found(
        self, client: TestClient, db: Session, settings: Settings, holder: factories.Holder
    ) -> None:
        """A holder cannot lock someone else's line: LINE_NOT_FOUND, nothing changes."""
        other = factories.holder(db, settings)
        other_headers = line_headers(client, other.msisdn)
        before = snapshot(db, exclude=("auth_tokens",))
        r = _set_lock(client, other_headers, holder, on=True)
        assert (r.status_code, r.json()["code"]) == (404, "LINE_NOT_FOUND")
        assert snapshot(db, exclude=("auth_tokens",)) == before


class TestLockedLineRefusesReplacement:
    """While the lock is on no replacement is taken; each attempt is audited and the holder alerted."""

    def test_store_replacement_is_refused(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        clerk: dict[str, str],
        clerk_user: StaffUser,
        holder: factories.Holder,
    ) -> None:
        """A clerk's store replacement is SIM_CHANGE_LOCKED: no order, audited, the holder alerted."""
        assert _set_lock(client, headers, holder, on=True).status_code == 200
        before = snapshot(db, exclude=ALERT_TABLES)
        r = _store_replacement(client, clerk, holder)
        assert (r.status_code, r.json()["code"]) == (423, "SIM_CHANGE_LOCKED")
        assert snapshot(db, exclude=ALERT_TABLES) == before
        assert [e.actor for e in _audit(db, holder, "replacement.refused_locked")] == [
            f"staff:{clerk_user.username}"
        ]
        assert _alerts(db, holder, "sim_change_blocked") == _old_contacts(holder.subscriber.contact_email)

    def test_online_replacement_is_refused_without_using_the_code(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """An online application is SIM_CHANGE_LOCKED, audited and alerted; its one-time code stays unused."""
        _lock_directly(db, holder)
        code = request_code(client, headers, outbox, purpose="replacement.submit")
        before = snapshot(db, exclude=ALERT_TABLES)
        r = client.post(
            "/api/v1/replacements",
            headers=headers,
            json={
                "msisdn": holder.msisdn,
                "channel": "online_mail",
                "one_time_code": code,
                **PLACEHOLDER_UPLOADS,
            },
        )
        assert (r.status_code, r.json()["code"]) == (423, "SIM_CHANGE_LOCKED")
        assert snapshot(db, exclude=ALERT_TABLES) == before
        assert [e.actor for e in _audit(db, holder, "replacement.refused_locked")] == [
            f"line:{holder.line.id}"
        ]
        assert _alerts(db, holder, "sim_change_blocked") == _old_contacts(holder.subscriber.contact_email)
        [row] = db.query(OneTimeCode).all()
        assert (row.consumed_at, row.attempts) == (None, 0)

    def test_every_attempt_is_audited_and_alerted(
        self, client: TestClient, db: Session, clerk: dict[str, str], holder: factories.Holder
    ) -> None:
        """Two refused attempts give two audit entries and two alerts to each contact."""
        _lock_directly(db, holder)
        for _ in range(2):
            assert _store_replacement(client, clerk, holder).status_code == 423
        assert len(_audit(db, holder, "replacement.refused_locked")) == 2
        assert _alerts(db, holder, "sim_change_blocked") == sorted(
            _old_contacts(holder.subscriber.contact_email) * 2
        )

    def test_replacement_is_taken_once_the_lock_is_off(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        clerk: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """After the holder turns the lock off with a code, the clerk's store replacement is taken."""
        _lock_directly(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        assert _set_lock(client, headers, holder, on=False, code=code).status_code == 200
        r = _store_replacement(client, clerk, holder)
        assert r.status_code == 201, r.text
        assert db.query(ReplacementOrder).filter_by(line_id=holder.line.id).count() == 1


def _change_contacts(
    client: TestClient,
    headers: dict[str, str],
    holder: factories.Holder,
    code: str,
    *,
    email: str | None = NEW_EMAIL,
    phone: str | None = NEW_PHONE,
) -> Response:
    return client.put(
        f"/api/v1/lines/{holder.msisdn}/contacts",
        headers=headers,
        json={"contact_email": email, "contact_phone": phone, "one_time_code": code},
    )


def _contacts_of(db: Session, holder: factories.Holder) -> tuple[str | None, str | None]:
    db.expire_all()
    sub = db.get(Subscriber, holder.subscriber.id)
    assert sub is not None
    return sub.contact_email, sub.contact_phone


class TestContactChange:
    """``PUT /api/v1/lines/{msisdn}/contacts``: high assurance, and the old contacts are told."""

    def test_change_with_session_and_code(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """With a code sent to a current contact the new contacts are stored, shown masked and audited."""
        code = request_code(client, headers, outbox, purpose="contact.change")
        r = _change_contacts(client, headers, holder, code)
        assert r.status_code == 200, r.text
        assert r.json() == {"contact_email": mask_email(NEW_EMAIL), "contact_phone": mask_msisdn(NEW_PHONE)}
        assert _contacts_of(db, holder) == (NEW_EMAIL, NEW_PHONE)
        assert len(_audit(db, holder, "line.contacts_changed")) == 1

    def test_old_contacts_are_told(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """The "contacts changed" message goes to the old e-mail and phone, not to the new ones."""
        old_email = holder.subscriber.contact_email
        code = request_code(client, headers, outbox, purpose="contact.change")
        assert _change_contacts(client, headers, holder, code).status_code == 200
        assert _alerts(db, holder, "contacts_changed") == _old_contacts(old_email)

    def test_next_code_goes_to_the_new_contact(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """Once changed, one-time codes go to the new e-mail address."""
        code = request_code(client, headers, outbox, purpose="contact.change")
        assert _change_contacts(client, headers, holder, code).status_code == 200
        request_code(client, headers, outbox, purpose="lock.off")
        assert read_outbox(outbox)[-1].to == NEW_EMAIL

    def test_wrong_code_is_refused(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A wrong code is PROOF_FAILED and the contacts stay as they were; nobody is told of a change."""
        code = request_code(client, headers, outbox, purpose="contact.change")
        before = snapshot(db, exclude=WRONG_CODE_TABLES)
        r = _change_contacts(client, headers, holder, _wrong(code))
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert snapshot(db, exclude=WRONG_CODE_TABLES) == before

    def test_code_for_another_action_is_refused(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """A code asked for turning the lock off cannot change the contacts (PROOF_FAILED)."""
        old = _contacts_of(db, holder)
        code = request_code(client, headers, outbox, purpose="lock.off")
        r = _change_contacts(client, headers, holder, code)
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert _contacts_of(db, holder) == old

    @pytest.mark.parametrize(
        ("email", "phone", "status", "error"),
        [
            (NEW_EMAIL, "LINE", 422, "CONTACT_IS_LINE"),
            ("not-an-address", NEW_PHONE, 422, "CONTACT_INVALID"),
            (NEW_EMAIL, "12345", 422, "INVALID_MSISDN"),
            (None, None, 422, "CONTACT_REQUIRED"),
        ],
    )
    def test_bad_contacts_are_refused_and_keep_the_code(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
        email: str | None,
        phone: str | None,
        status: int,
        error: str,
    ) -> None:
        """The line's own number (however spaced), a bad address or number, or no contact at all: refused.

        Nothing changes, nobody is told, and the code still works for a good request.
        """
        if phone == "LINE":
            national = holder.msisdn.removeprefix("+86")
            phone = f"+86 {national[:3]} {national[3:7]} {national[7:]}"
        code = request_code(client, headers, outbox, purpose="contact.change")
        before = snapshot(db, exclude=("auth_tokens",))
        r = _change_contacts(client, headers, holder, code, email=email, phone=phone)
        assert (r.status_code, r.json()["code"]) == (status, error)
        assert snapshot(db, exclude=("auth_tokens",)) == before
        assert _change_contacts(client, headers, holder, code).status_code == 200

    def test_code_is_required(
        self, client: TestClient, db: Session, headers: dict[str, str], holder: factories.Holder
    ) -> None:
        """Without a one-time code the request is VALIDATION_FAILED and changes nothing."""
        before = snapshot(db, exclude=("auth_tokens",))
        r = client.put(
            f"/api/v1/lines/{holder.msisdn}/contacts", headers=headers, json={"contact_email": NEW_EMAIL}
        )
        assert (r.status_code, r.json()["code"]) == (422, "VALIDATION_FAILED")
        assert snapshot(db, exclude=("auth_tokens",)) == before

    @pytest.mark.parametrize(
        "settings", [{"assurance_policy": {"contact.change": "in_person"}}], indirect=True
    )
    def test_operator_policy_can_ask_for_more(
        self,
        client: TestClient,
        db: Session,
        headers: dict[str, str],
        holder: factories.Holder,
        outbox: Path,
    ) -> None:
        """Where the operator asks for an in-person check, session plus code is ASSURANCE_TOO_LOW."""
        code = request_code(client, headers, outbox, purpose="contact.change")
        before = snapshot(db, exclude=("auth_tokens",))
        r = _change_contacts(client, headers, holder, code)
        assert (r.status_code, r.json()["code"]) == (403, "ASSURANCE_TOO_LOW")
        assert snapshot(db, exclude=("auth_tokens",)) == before

    def test_staff_cannot_change_them(
        self, client: TestClient, db: Session, clerk: dict[str, str], holder: factories.Holder
    ) -> None:
        """A clerk's session is not the holder's: LINE_SIGN_IN_REQUIRED, nothing changes."""
        before = snapshot(db, exclude=("auth_tokens",))
        r = _change_contacts(client, clerk, holder, "123456")
        assert (r.status_code, r.json()["code"]) == (401, "LINE_SIGN_IN_REQUIRED")
        assert snapshot(db, exclude=("auth_tokens",)) == before
