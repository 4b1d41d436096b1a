"""CAMARA SIM Swap Subscriptions 0.3: create / list / get / delete per sim-swap-subscriptions.yaml, and the
CloudEvents delivered through the job queue to a real HTTP receiver on loopback."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from simkeep.camara import subscriptions
from simkeep.camara.api import runtime_of
from simkeep.camara.auth import issue_token
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.jobs.worker import drain
from simkeep.models import CamaraSubscription, Job, JobState, Line, SimChange, SubscriptionStatus
from simkeep.replacements import activation
from tests import factories
from tests.camara.conftest import Rp, bearer, logged, token_for
from tests.camara.orders import store_order
from tests.camara.receiver import Receiver, running_receiver
from tests.camara.spec import assert_conforms, assert_schema

SPEC = "sim-swap-subscriptions.yaml"
URL = "/sim-swap-subscriptions/v0.3/subscriptions"
CREATE = subscriptions.CREATE_SCOPES[0]
SCOPES = [CREATE, "sim-swap-subscriptions:read", "sim-swap-subscriptions:delete"]
SINK = "https://198.51.100.7/events"  # an address literal: creating a subscription connects to nothing
UNKNOWN = "+8613999999999"
TOKEN_EXPIRES = "2099-01-01T00:00:00Z"


@pytest.fixture
def camara_settings(settings: Settings) -> Settings:
    """The CAMARA test settings with http sinks allowed to loopback (the receiver is plain http)."""
    return settings.model_copy(
        update={
            "camara_client_cache_seconds": 0.0,
            "camara_query_flush_seconds": 3600.0,
            "camara_sink_allow_http": True,
            "camara_sink_timeout_seconds": 2.0,
        }
    )


@pytest.fixture
def rp(make_rp: Any) -> Rp:
    """A relying party with the three subscription scopes."""
    client: Rp = make_rp(SCOPES)
    return client


@pytest.fixture
def token(api: TestClient, rp: Rp) -> str:
    """A two-legged token of ``rp``."""
    return token_for(api, rp)


@pytest.fixture
def line(db: Session, settings: Settings) -> Line:
    """A line in service."""
    return factories.holder(db, settings).line


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1."""
    with running_receiver() as running:
        yield running


def _body(phone: str | None, sink: str = SINK, **config: Any) -> dict[str, Any]:
    detail = {"phoneNumber": phone} if phone is not None else {}
    return {
        "protocol": "HTTP",
        "sink": sink,
        "sinkCredential": {
            "credentialType": "ACCESSTOKEN",
            "accessToken": "sink-token-abc",
            "accessTokenExpiresUtc": TOKEN_EXPIRES,
            "accessTokenType": "bearer",
        },
        "types": [subscriptions.SWAPPED],
        "config": {"subscriptionDetail": detail, **config},
    }


def _create(api: TestClient, token: str, body: Any, **headers: str) -> Any:
    response = api.post(URL, json=body, headers=bearer(token, **headers))
    assert_conforms(SPEC, "/subscriptions", response.status_code, response.json())
    return response


def _count(db: Session) -> int:
    return int(db.scalar(select(func.count()).select_from(CamaraSubscription)) or 0)


def _deliver(db: Session, settings: Settings) -> int:
    """Run every queued delivery now (also those scheduled a moment later), as a worker would."""
    db.execute(
        update(Job)
        .where(Job.kind == subscriptions.DELIVER, Job.state == JobState.QUEUED)
        .values(run_at=utcnow() - timedelta(seconds=1))
    )
    ran = drain(db, settings)
    db.commit()
    return ran


def _jobs(db: Session) -> list[Job]:
    return list(db.scalars(select(Job).where(Job.kind == subscriptions.DELIVER).order_by(Job.id)))


def _subscribe(
    db: Session, settings: Settings, rp: Rp, line: Line, sink: str, **kw: Any
) -> CamaraSubscription:
    request = subscriptions.parse_request(settings, _body(line.msisdn, sink, **kw.pop("config", {})) | kw)
    sub = subscriptions.create_subscription(db, settings, client_pk=rp.pk, token_phone=None, request=request)
    db.commit()
    return sub


class TestCreate:
    """``POST /subscriptions``."""

    def test_two_legged_create(self, api: TestClient, token: str, line: Line, db: Session) -> None:
        """201 with the spec's Subscription: id, ACTIVE, startsAt, the config echoed with the phone number,
        no credential; the x-correlator echoed."""
        expire = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
        body = _body(line.msisdn, subscriptionMaxEvents=5, subscriptionExpireTime=expire.isoformat())
        response = _create(api, token, body, **{"x-correlator": "sub-1"})
        assert response.status_code == 201
        assert response.headers["x-correlator"] == "sub-1"
        got = response.json()
        assert got["status"] == "ACTIVE"
        assert got["config"]["subscriptionDetail"] == {"phoneNumber": line.msisdn}
        assert got["config"]["subscriptionMaxEvents"] == 5
        assert datetime.fromisoformat(got["expiresAt"]) == expire
        assert "sinkCredential" not in got
        assert got["types"] == [subscriptions.SWAPPED]
        assert db.scalar(select(CamaraSubscription.msisdn).where(CamaraSubscription.public_id == got["id"]))

    def test_three_legged_create_leaves_the_number_out(
        self, api: TestClient, rp: Rp, line: Line, camara_settings: Settings
    ) -> None:
        """With a token bound to the number, the request names no number and the answer shows none."""
        bound, _ = issue_token(
            camara_settings, client_id=rp.client_id, scopes=SCOPES, phone_number=line.msisdn
        )
        response = _create(api, bound, _body(None))
        assert response.status_code == 201
        assert response.json()["config"]["subscriptionDetail"] == {}

    def test_three_legged_with_a_number_is_422(
        self, api: TestClient, rp: Rp, line: Line, camara_settings: Settings, db: Session
    ) -> None:
        """A bound token and a phone number in the body: 422 UNNECESSARY_IDENTIFIER, nothing created."""
        bound, _ = issue_token(
            camara_settings, client_id=rp.client_id, scopes=SCOPES, phone_number=line.msisdn
        )
        response = _create(api, bound, _body(line.msisdn))
        assert (response.status_code, response.json()["code"]) == (422, "UNNECESSARY_IDENTIFIER")
        assert _count(db) == 0

    def test_two_legged_without_a_number_is_422(self, api: TestClient, token: str, db: Session) -> None:
        """A two-legged token and no phone number: 422 MISSING_IDENTIFIER."""
        response = _create(api, token, _body(None))
        assert (response.status_code, response.json()["code"]) == (422, "MISSING_IDENTIFIER")
        assert _count(db) == 0

    def test_unknown_number_is_404(self, api: TestClient, token: str, db: Session) -> None:
        """A number simkeep does not serve: 404 IDENTIFIER_NOT_FOUND, nothing created."""
        response = api.post(URL, json=_body(UNKNOWN), headers=bearer(token))
        assert (response.status_code, response.json()["code"]) == (404, "IDENTIFIER_NOT_FOUND")
        assert _count(db) == 0

    def test_same_subscription_twice_is_409(
        self, api: TestClient, token: str, line: Line, db: Session
    ) -> None:
        """The same number to the same sink while the first is active: 409 ALREADY_EXISTS."""
        assert _create(api, token, _body(line.msisdn)).status_code == 201
        response = _create(api, token, _body(line.msisdn))
        assert (response.status_code, response.json()["code"]) == (409, "ALREADY_EXISTS")
        assert _count(db) == 1

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"protocol": None}, "INVALID_ARGUMENT"),
            ({"protocol": "SMTP"}, "INVALID_ARGUMENT"),
            ({"protocol": "MQTT3"}, "INVALID_PROTOCOL"),
            ({"sink": None}, "INVALID_ARGUMENT"),
            ({"sink": "ftp://198.51.100.7/x"}, "INVALID_SINK"),
            ({"sink": "http://198.51.100.7/events"}, "INVALID_SINK"),
            ({"sink": "https://user:pw@198.51.100.7/events"}, "INVALID_SINK"),
            ({"sink": "not a url"}, "INVALID_SINK"),
            ({"types": []}, "INVALID_ARGUMENT"),
            ({"types": ["org.camaraproject.sim-swap-subscriptions.v0.other"]}, "INVALID_ARGUMENT"),
            ({"config": None}, "INVALID_ARGUMENT"),
            ({"config": {}}, "INVALID_ARGUMENT"),
            ({"config": {"subscriptionDetail": {"phoneNumber": "0123"}}}, "INVALID_ARGUMENT"),
            ({"sinkCredential": {"credentialType": "REFRESHTOKEN"}}, "INVALID_CREDENTIAL"),
            ({"sinkCredential": {"credentialType": "OTHER"}}, "INVALID_CREDENTIAL"),
            ({"sinkCredential": {"credentialType": "PLAIN", "identifier": "a"}}, "INVALID_CREDENTIAL"),
            (
                {
                    "sinkCredential": {
                        "credentialType": "ACCESSTOKEN",
                        "accessToken": "t",
                        "accessTokenExpiresUtc": TOKEN_EXPIRES,
                        "accessTokenType": "mac",
                    }
                },
                "INVALID_TOKEN",
            ),
            (
                {
                    "sinkCredential": {
                        "credentialType": "ACCESSTOKEN",
                        "accessToken": "t",
                        "accessTokenExpiresUtc": "2020-01-01T00:00:00Z",
                        "accessTokenType": "bearer",
                    }
                },
                "INVALID_CREDENTIAL",
            ),
            ({"protocolSettings": {"method": "PUT"}}, "INVALID_ARGUMENT"),
        ],
    )
    def test_bad_request_is_400(
        self, api: TestClient, token: str, line: Line, db: Session, change: dict[str, Any], code: str
    ) -> None:
        """Each malformed request is 400 with the spec's code and a message; nothing is created."""
        body = _body(line.msisdn)
        for key, value in change.items():
            if key == "config" and isinstance(value, dict) and "subscriptionDetail" in value:
                body[key] = value
            elif value is None:
                body.pop(key)
            else:
                body[key] = value
        response = _create(api, token, body)
        assert (response.status_code, response.json()["code"]) == (400, code)
        assert response.json()["message"]
        assert _count(db) == 0

    @pytest.mark.parametrize(
        ("config", "code"),
        [
            ({"subscriptionExpireTime": "2020-01-01T00:00:00Z"}, "OUT_OF_RANGE"),
            ({"subscriptionExpireTime": "tomorrow"}, "INVALID_ARGUMENT"),
            ({"subscriptionExpireTime": "2099-01-01T00:00:00"}, "INVALID_ARGUMENT"),
            ({"subscriptionMaxEvents": 0}, "OUT_OF_RANGE"),
            ({"subscriptionMaxEvents": "5"}, "INVALID_ARGUMENT"),
            ({"initialEvent": "yes"}, "INVALID_ARGUMENT"),
            ({"initialEvent": True}, "INVALID_ARGUMENT"),
        ],
    )
    def test_bad_config_is_400(
        self, api: TestClient, token: str, line: Line, db: Session, config: dict[str, Any], code: str
    ) -> None:
        """A bad expiry time, maximum of events or initialEvent is 400; nothing is created."""
        response = _create(api, token, _body(line.msisdn, **config))
        assert (response.status_code, response.json()["code"]) == (400, code)
        assert _count(db) == 0

    def test_not_json_is_400(self, api: TestClient, token: str, db: Session) -> None:
        """A body that is not JSON: 400 INVALID_ARGUMENT."""
        response = api.post(URL, content=b"{", headers=bearer(token, **{"content-type": "application/json"}))
        assert (response.status_code, response.json()["code"]) == (400, "INVALID_ARGUMENT")
        assert _count(db) == 0

    def test_without_token_is_401(self, api: TestClient, line: Line) -> None:
        """No bearer token: 401 UNAUTHENTICATED."""
        response = api.post(URL, json=_body(line.msisdn))
        assert (response.status_code, response.json()["code"]) == (401, "UNAUTHENTICATED")
        assert_conforms(SPEC, "/subscriptions", 401, response.json())

    def test_without_create_scope_is_403(
        self, api: TestClient, make_rp: Any, line: Line, db: Session
    ) -> None:
        """A token with only the read scope cannot create: 403 PERMISSION_DENIED."""
        reader = token_for(api, make_rp(["sim-swap-subscriptions:read"]))
        response = _create(api, reader, _body(line.msisdn))
        assert (response.status_code, response.json()["code"]) == (403, "PERMISSION_DENIED")
        assert _count(db) == 0

    def test_calls_are_recorded(self, api: TestClient, token: str, line: Line, db: Session, rp: Rp) -> None:
        """A create (with its number) and a refused list are kept in the query log like the other calls."""
        _create(api, token, _body(line.msisdn))
        api.get(URL, headers=bearer(token, **{"x-correlator": "bad correlator!"}))
        runtime_of(api.app).recorder.flush()
        rows = logged(db, rp.pk)
        assert [(r.api, r.msisdn, r.status) for r in rows] == [
            (subscriptions.API_CREATE, line.msisdn, 201),
            (subscriptions.API_LIST, None, 400),
        ]

    def test_credential_is_sealed_at_rest(self, api: TestClient, token: str, line: Line, db: Session) -> None:
        """The sink token is nowhere in the row in clear: it is sealed with the vault."""
        body = _body(line.msisdn)
        body["sinkCredential"]["accessToken"] = "very-secret-sink-token-123"
        assert _create(api, token, body).status_code == 201
        row = db.execute(text("SELECT * FROM camara_subscriptions")).one()
        dump = repr(tuple(row)).encode() + b"".join(v for v in row if isinstance(v, bytes))
        assert b"very-secret-sink-token-123" not in dump
        sub = db.scalars(select(CamaraSubscription)).one()
        assert sub.credential_type == "ACCESSTOKEN"
        assert sub.credential_ciphertext


class TestListGetDelete:
    """``GET /subscriptions``, ``GET`` and ``DELETE /subscriptions/{id}``."""

    def test_list_shows_own_subscriptions_only(
        self, api: TestClient, token: str, make_rp: Any, line: Line
    ) -> None:
        """A client lists its own subscriptions, never another client's."""
        mine = _create(api, token, _body(line.msisdn)).json()
        other = token_for(api, make_rp(SCOPES, name="Other bank"))
        _create(api, other, _body(line.msisdn, sink="https://198.51.100.8/x"))
        response = api.get(URL, headers=bearer(token))
        assert response.status_code == 200
        assert_conforms(SPEC, "/subscriptions", 200, response.json(), method="get")
        assert [s["id"] for s in response.json()] == [mine["id"]]

    def test_three_legged_list_sees_its_number_only(
        self,
        api: TestClient,
        token: str,
        rp: Rp,
        line: Line,
        db: Session,
        settings: Settings,
        camara_settings: Settings,
    ) -> None:
        """A token bound to a number lists only that number's subscriptions, without the number."""
        second = factories.holder(db, settings).line
        _create(api, token, _body(line.msisdn))
        _create(api, token, _body(second.msisdn))
        bound, _ = issue_token(
            camara_settings, client_id=rp.client_id, scopes=SCOPES, phone_number=second.msisdn
        )
        listed = api.get(URL, headers=bearer(bound)).json()
        assert len(listed) == 1
        assert listed[0]["config"]["subscriptionDetail"] == {}

    def test_get_one(self, api: TestClient, token: str, line: Line) -> None:
        """GET by id answers the subscription as created."""
        created = _create(api, token, _body(line.msisdn)).json()
        response = api.get(f"{URL}/{created['id']}", headers=bearer(token, **{"x-correlator": "g-1"}))
        assert response.status_code == 200
        assert response.headers["x-correlator"] == "g-1"
        assert_conforms(SPEC, "/subscriptions/{subscriptionId}", 200, response.json(), method="get")
        assert response.json() == created

    def test_get_another_clients_subscription_is_404(
        self, api: TestClient, token: str, make_rp: Any, line: Line
    ) -> None:
        """Another client's id, or an unknown one, is 404 NOT_FOUND."""
        created = _create(api, token, _body(line.msisdn)).json()
        other = token_for(api, make_rp(SCOPES, name="Other bank"))
        for token_used, sub_id in ((other, created["id"]), (token, "no-such-id")):
            response = api.get(f"{URL}/{sub_id}", headers=bearer(token_used))
            assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND")
            assert_conforms(SPEC, "/subscriptions/{subscriptionId}", 404, response.json(), method="get")

    def test_delete(self, api: TestClient, token: str, line: Line, db: Session) -> None:
        """DELETE is 204; the subscription is then DELETED, a second DELETE is 404, and a
        subscription-ended event (SUBSCRIPTION_DELETED) is queued."""
        created = _create(api, token, _body(line.msisdn)).json()
        response = api.delete(f"{URL}/{created['id']}", headers=bearer(token, **{"x-correlator": "d-1"}))
        assert response.status_code == 204
        assert response.headers["x-correlator"] == "d-1"
        assert api.get(f"{URL}/{created['id']}", headers=bearer(token)).json()["status"] == "DELETED"
        assert api.get(URL, headers=bearer(token)).json() == []
        again = api.delete(f"{URL}/{created['id']}", headers=bearer(token))
        assert (again.status_code, again.json()["code"]) == (404, "NOT_FOUND")
        [job] = _jobs(db)
        assert job.payload["event"]["type"] == subscriptions.ENDED
        assert job.payload["event"]["data"]["terminationReason"] == "SUBSCRIPTION_DELETED"

    def test_delete_without_scope_is_403(self, api: TestClient, make_rp: Any, token: str, line: Line) -> None:
        """A reader cannot delete: 403 PERMISSION_DENIED, the subscription stays active."""
        created = _create(api, token, _body(line.msisdn)).json()
        reader = token_for(api, make_rp(["sim-swap-subscriptions:read"]))
        response = api.delete(f"{URL}/{created['id']}", headers=bearer(reader))
        assert (response.status_code, response.json()["code"]) == (403, "PERMISSION_DENIED")
        assert api.get(f"{URL}/{created['id']}", headers=bearer(token)).json()["status"] == "ACTIVE"


class TestDelivery:
    """Events queued by :func:`on_sim_change` and posted by the worker as CloudEvents to a real receiver."""

    def test_swap_is_delivered_as_a_cloudevent(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """A SIM change queues one event in the caller's transaction; the worker posts it as a CloudEvent
        1.0 (structured JSON) with the sink's bearer token."""
        sub = _subscribe(db, camara_settings, rp, line, receiver.url)
        changed = utcnow()
        subscriptions.on_sim_change(db, line_id=line.id, msisdn=line.msisdn, changed_at=changed)
        db.commit()
        assert len(_jobs(db)) == 1
        assert receiver.received == []  # nothing is sent before a worker runs the job
        _deliver(db, camara_settings)
        [got] = receiver.received
        assert got.headers["content-type"] == "application/cloudevents+json"
        assert got.headers["authorization"] == "Bearer sink-token-abc"
        event = got.json()
        assert_schema(SPEC, "EventSimSwap", event)
        assert event["specversion"] == "1.0"
        assert event["type"] == subscriptions.SWAPPED
        assert event["source"] == camara_settings.camara_event_source
        assert event["data"] == {"phoneNumber": line.msisdn, "subscriptionId": sub.public_id}
        assert datetime.fromisoformat(event["time"]) == changed.replace(
            microsecond=changed.microsecond // 1000 * 1000
        )
        assert _jobs(db)[0].state == JobState.DONE

    def test_real_activation_notifies_the_subscriber(
        self, db: Session, settings: Settings, camara_settings: Settings, rp: Rp, receiver: Receiver
    ) -> None:
        """A store activation through the replacement services queues the swapped event in its own
        transaction; the worker delivers it with the SIM change's time."""
        clerk, reference, msisdn, line_id = store_order(db, settings)
        line = db.get(Line, line_id)
        assert line is not None
        sub = _subscribe(db, camara_settings, rp, line, receiver.url)
        activation.activate(db, settings, actor=clerk, reference=reference)
        db.commit()
        changed = db.scalar(select(func.max(SimChange.changed_at)).where(SimChange.line_id == line_id))
        assert changed is not None
        _deliver(db, camara_settings)
        [event] = [e for e in receiver.events() if e["type"] == subscriptions.SWAPPED]
        assert event["data"] == {"phoneNumber": msisdn, "subscriptionId": sub.public_id}
        assert abs(datetime.fromisoformat(event["time"]) - changed) < timedelta(milliseconds=1)

    def test_plain_credential_is_sent_as_basic_auth(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """A PLAIN sink credential reaches the sink as HTTP Basic authentication."""
        body = _body(line.msisdn, receiver.url)
        body["sinkCredential"] = {"credentialType": "PLAIN", "identifier": "bank", "secret": "pw:1"}
        request = subscriptions.parse_request(camara_settings, body)
        subscriptions.create_subscription(
            db, camara_settings, client_pk=rp.pk, token_phone=None, request=request
        )
        subscriptions.on_sim_change(db, line_id=line.id, msisdn=line.msisdn, changed_at=utcnow())
        db.commit()
        _deliver(db, camara_settings)
        assert (
            receiver.received[0].headers["authorization"]
            == "Basic " + base64.b64encode(b"bank:pw:1").decode()
        )

    def test_same_change_twice_is_queued_once(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """Calling on_sim_change twice for one change queues one event (idempotency key)."""
        _subscribe(db, camara_settings, rp, line, receiver.url)
        changed = utcnow()
        for _ in range(2):
            subscriptions.on_sim_change(db, line_id=line.id, msisdn=line.msisdn, changed_at=changed)
        db.commit()
        _deliver(db, camara_settings)
        assert len(receiver.received) == 1

    def test_other_lines_and_older_changes_send_nothing(
        self,
        db: Session,
        settings: Settings,
        camara_settings: Settings,
        rp: Rp,
        line: Line,
        receiver: Receiver,
    ) -> None:
        """A change of another line, or one from before the subscription started (imported history),
        queues nothing."""
        sub = _subscribe(db, camara_settings, rp, line, receiver.url)
        other = factories.holder(db, settings).line
        subscriptions.on_sim_change(db, line_id=other.id, msisdn=other.msisdn, changed_at=utcnow())
        subscriptions.on_sim_change(
            db, line_id=line.id, msisdn=line.msisdn, changed_at=sub.starts_at - timedelta(days=1)
        )
        db.commit()
        assert _jobs(db) == []

    def test_failed_delivery_is_retried_with_backoff(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """A sink answering 503 fails the try: the job waits (backoff) with the error kept, and the next try
        delivers the same event (same id)."""
        _subscribe(db, camara_settings, rp, line, receiver.url)
        receiver.statuses.append(503)
        subscriptions.on_sim_change(db, line_id=line.id, msisdn=line.msisdn, changed_at=utcnow())
        db.commit()
        drain(db, camara_settings)
        db.commit()
        [job] = _jobs(db)
        assert (job.state, job.attempts) == (JobState.QUEUED, 1)
        assert "503" in (job.last_error or "")
        assert job.run_at > utcnow() + timedelta(seconds=5)
        _deliver(db, camara_settings)
        db.refresh(job)
        assert (job.state, job.attempts) == (JobState.DONE, 2)
        first, second = receiver.events()
        assert first["id"] == second["id"]

    def test_unreachable_sink_is_retried(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line
    ) -> None:
        """A sink nobody listens on fails the try (connection refused) and the job stays queued."""
        with running_receiver() as gone:
            url = gone.url
        _subscribe(db, camara_settings, rp, line, url)
        subscriptions.on_sim_change(db, line_id=line.id, msisdn=line.msisdn, changed_at=utcnow())
        db.commit()
        drain(db, camara_settings)
        db.commit()
        [job] = _jobs(db)
        assert (job.state, job.attempts) == (JobState.QUEUED, 1)
        assert "could not be reached" in (job.last_error or "")

    def test_gone_sink_ends_the_subscription(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """A sink answering 410 Gone ends the subscription (NETWORK_TERMINATED) and is not retried."""
        sub = _subscribe(db, camara_settings, rp, line, receiver.url)
        receiver.statuses.append(410)
        subscriptions.on_sim_change(db, line_id=line.id, msisdn=line.msisdn, changed_at=utcnow())
        db.commit()
        _deliver(db, camara_settings)
        db.refresh(sub)
        assert (sub.status, sub.termination_reason) == (SubscriptionStatus.EXPIRED, "NETWORK_TERMINATED")
        assert _jobs(db)[0].state == JobState.DONE


class TestEnding:
    """``subscription-ended``: maximum events, expiry, deletion."""

    def test_max_events_reached(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """With subscriptionMaxEvents 1, the first swap is delivered, then subscription-ended
        (MAX_EVENTS_REACHED); a later swap sends nothing."""
        sub = _subscribe(db, camara_settings, rp, line, receiver.url, config={"subscriptionMaxEvents": 1})
        subscriptions.on_sim_change(db, line_id=line.id, msisdn=line.msisdn, changed_at=utcnow())
        db.commit()
        _deliver(db, camara_settings)
        subscriptions.on_sim_change(
            db, line_id=line.id, msisdn=line.msisdn, changed_at=utcnow() + timedelta(seconds=1)
        )
        db.commit()
        _deliver(db, camara_settings)
        swapped, ended = receiver.events()
        assert swapped["type"] == subscriptions.SWAPPED
        assert ended["type"] == subscriptions.ENDED
        assert_schema(SPEC, "EventSubscriptionEnded", ended)
        assert ended["data"]["terminationReason"] == "MAX_EVENTS_REACHED"
        assert ended["data"]["subscriptionId"] == sub.public_id
        db.refresh(sub)
        assert sub.status == SubscriptionStatus.EXPIRED

    def test_expiry_ends_the_subscription(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """The end check queued at the expiry time ends the subscription (EXPIRED) and the sink gets
        subscription-ended with SUBSCRIPTION_EXPIRED."""
        soon = (utcnow() + timedelta(hours=1)).isoformat()
        sub = _subscribe(db, camara_settings, rp, line, receiver.url, config={"subscriptionExpireTime": soon})
        [check] = db.scalars(select(Job).where(Job.kind == subscriptions.END_CHECK)).all()
        assert check.run_at == sub.expires_at
        sub.expires_at = check.run_at = utcnow() - timedelta(seconds=1)  # the hour has passed
        db.commit()
        _deliver(db, camara_settings)
        db.refresh(sub)
        assert (sub.status, sub.termination_reason) == (SubscriptionStatus.EXPIRED, "SUBSCRIPTION_EXPIRED")
        _deliver(db, camara_settings)
        [ended] = receiver.events()
        assert ended["data"]["terminationReason"] == "SUBSCRIPTION_EXPIRED"

    def test_early_end_check_waits(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """An end check that runs before the expiry time (clock skew) leaves the subscription active and
        checks again at its time."""
        soon = (utcnow() + timedelta(hours=1)).isoformat()
        sub = _subscribe(db, camara_settings, rp, line, receiver.url, config={"subscriptionExpireTime": soon})
        assert subscriptions.end_check(db, subscription_pk=sub.id) is False
        db.commit()
        assert sub.status == SubscriptionStatus.ACTIVE
        assert receiver.received == []

    def test_expired_subscription_sends_no_swap(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """A swap after the expiry time (before the periodic job ran) ends the subscription instead of
        sending a swap event."""
        soon = (utcnow() + timedelta(hours=1)).isoformat()
        sub = _subscribe(db, camara_settings, rp, line, receiver.url, config={"subscriptionExpireTime": soon})
        sub.expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
        subscriptions.on_sim_change(db, line_id=line.id, msisdn=line.msisdn, changed_at=utcnow())
        db.commit()
        _deliver(db, camara_settings)
        assert [e["type"] for e in receiver.events()] == [subscriptions.ENDED]

    def test_deleted_subscription_tells_the_sink(
        self,
        api: TestClient,
        token: str,
        db: Session,
        camara_settings: Settings,
        line: Line,
        receiver: Receiver,
    ) -> None:
        """Deleting through the API delivers subscription-ended (SUBSCRIPTION_DELETED) to the sink, and
        later swaps send nothing."""
        created = _create_raw(api, token, _body(line.msisdn, receiver.url))
        api.delete(f"{URL}/{created['id']}", headers=bearer(token))
        subscriptions.on_sim_change(db, line_id=line.id, msisdn=line.msisdn, changed_at=utcnow())
        db.commit()
        _deliver(db, camara_settings)
        [ended] = receiver.events()
        assert ended["data"]["terminationReason"] == "SUBSCRIPTION_DELETED"

    def test_sink_token_about_to_expire_ends_it(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """A subscription whose sink token runs out within two minutes is ended (ACCESS_TOKEN_EXPIRED)
        while the token still works."""
        sub = _subscribe(db, camara_settings, rp, line, receiver.url)
        sub.access_token_expires_at = utcnow() + timedelta(seconds=60)
        db.commit()
        assert subscriptions.end_due(db, now=utcnow()) == 1
        db.commit()
        _deliver(db, camara_settings)
        [ended] = receiver.events()
        assert ended["data"]["terminationReason"] == "ACCESS_TOKEN_EXPIRED"
        assert receiver.received[0].headers["authorization"] == "Bearer sink-token-abc"

    def test_credentials_wiped_a_day_after_the_end(
        self, db: Session, camara_settings: Settings, rp: Rp, line: Line, receiver: Receiver
    ) -> None:
        """Ending a subscription queues the wipe of its sealed sink credential a day later, after every
        retry of its deliveries."""
        sub = _subscribe(db, camara_settings, rp, line, receiver.url)
        subscriptions.delete_subscription(db, client_pk=rp.pk, public_id=sub.public_id, token_phone=None)
        db.commit()
        [wipe] = db.scalars(select(Job).where(Job.kind == subscriptions.WIPE)).all()
        assert wipe.run_at >= utcnow() + timedelta(hours=23)
        wipe.run_at = utcnow() - timedelta(seconds=1)  # a day has passed
        db.commit()
        _deliver(db, camara_settings)
        db.refresh(sub)
        assert sub.credential_ciphertext is None
        assert [e["type"] for e in receiver.events()] == [subscriptions.ENDED]


def _create_raw(api: TestClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create through the API (http loopback sinks do not match the spec's https pattern, so no schema)."""
    response = api.post(URL, json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
