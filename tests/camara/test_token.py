"""``POST /oauth2/token`` (client credentials) and the access tokens it issues."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.camara import clients
from simkeep.camara.auth import issue_token, verify_token
from simkeep.camara.errors import CamaraError
from simkeep.config import Settings
from tests.camara.conftest import ALL_SCOPES, Rp, bearer

CHECK = "/number-recycling/v0.2/check"


def _form(rp: Rp, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": rp.client_id,
        "client_secret": rp.secret,
        **extra,
    }


class TestTokenEndpoint:
    """Client credentials in, a short-lived bearer token out; RFC 6749 errors otherwise."""

    def test_client_credentials_give_a_bearer_token(self, api: TestClient, make_rp: Any) -> None:
        """Good credentials get a Bearer token with the lifetime in settings and every scope of the client."""
        rp = make_rp()
        response = api.post("/oauth2/token", data=_form(rp))
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 600
        assert body["scope"].split() == ALL_SCOPES
        assert response.headers["cache-control"] == "no-store"

    def test_http_basic_authentication_is_accepted(self, api: TestClient, make_rp: Any) -> None:
        """Credentials in an HTTP Basic header (client_secret_basic) work as well as in the form."""
        rp = make_rp()
        basic = base64.b64encode(f"{rp.client_id}:{rp.secret}".encode()).decode()
        response = api.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert response.status_code == 200, response.text

    def test_requested_scope_narrows_the_token(self, api: TestClient, make_rp: Any) -> None:
        """A token asked for one scope carries that scope only."""
        rp = make_rp()
        response = api.post("/oauth2/token", data=_form(rp, scope="sim-swap:check"))
        assert response.json()["scope"] == "sim-swap:check"

    @pytest.mark.parametrize(
        ("secret", "expected"),
        [("wrong-secret", "invalid_client"), ("", "invalid_client")],
    )
    def test_wrong_or_missing_secret_is_invalid_client(
        self, api: TestClient, make_rp: Any, secret: str, expected: str
    ) -> None:
        """A wrong or empty secret is 401 invalid_client."""
        rp = make_rp()
        response = api.post("/oauth2/token", data={**_form(rp), "client_secret": secret})
        assert response.status_code == 401
        assert response.json()["error"] == expected
        assert "access_token" not in response.json()

    def test_unknown_client_is_invalid_client(self, api: TestClient) -> None:
        """An unknown client id answers exactly like a wrong secret."""
        response = api.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": "rp_nobody", "client_secret": "x"},
        )
        assert response.status_code == 401
        assert response.json() == {
            "error": "invalid_client",
            "error_description": "Client authentication failed.",
        }

    def test_disabled_client_is_invalid_client(self, api: TestClient, make_rp: Any, db: Session) -> None:
        """A disabled client's good credentials are refused like wrong ones."""
        rp = make_rp()
        clients.disable_client(db, client_id=rp.client_id)
        db.commit()
        response = api.post("/oauth2/token", data=_form(rp))
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"

    def test_missing_grant_type_is_invalid_request(self, api: TestClient, make_rp: Any) -> None:
        """Without grant_type the request is 400 invalid_request."""
        rp = make_rp()
        form = _form(rp)
        del form["grant_type"]
        response = api.post("/oauth2/token", data=form)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")

    @pytest.mark.parametrize("grant", ["password", "authorization_code", "refresh_token"])
    def test_other_grants_are_unsupported(self, api: TestClient, make_rp: Any, grant: str) -> None:
        """Any grant but client_credentials is 400 unsupported_grant_type."""
        rp = make_rp()
        response = api.post("/oauth2/token", data=_form(rp, grant_type=grant))
        assert (response.status_code, response.json()["error"]) == (400, "unsupported_grant_type")

    @pytest.mark.parametrize("scope", ["sim-swap", "openid", "", "number-recycling:check admin"])
    def test_scope_not_granted_is_invalid_scope(self, api: TestClient, make_rp: Any, scope: str) -> None:
        """A scope the client does not hold (or an empty one) is 400 invalid_scope."""
        rp = make_rp(["number-recycling:check", "sim-swap:check"])
        response = api.post("/oauth2/token", data=_form(rp, scope=scope))
        assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")

    def test_json_body_is_invalid_request(self, api: TestClient, make_rp: Any) -> None:
        """The body must be form-encoded: JSON is 400 invalid_request."""
        rp = make_rp()
        response = api.post("/oauth2/token", json=_form(rp))
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")

    def test_two_authentication_methods_are_invalid_request(self, api: TestClient, make_rp: Any) -> None:
        """Credentials both in a Basic header and in the form are 400 invalid_request."""
        rp = make_rp()
        basic = base64.b64encode(f"{rp.client_id}:{rp.secret}".encode()).decode()
        response = api.post("/oauth2/token", data=_form(rp), headers={"Authorization": f"Basic {basic}"})
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")

    def test_repeated_parameter_is_invalid_request(self, api: TestClient, make_rp: Any) -> None:
        """A parameter given twice is 400 invalid_request (RFC 6749 section 3.2)."""
        rp = make_rp()
        body = (
            f"grant_type=client_credentials&client_id={rp.client_id}&client_secret={rp.secret}"
            "&scope=a&scope=b"
        )
        response = api.post(
            "/oauth2/token", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


class TestAccessTokens:
    """Tokens are stateless and signed; the client's state still applies within the cache time."""

    def test_expired_token_is_unauthenticated(self, camara_settings: Settings) -> None:
        """A token past its expiry is refused."""
        token, _ = issue_token(camara_settings, client_id="rp_x", scopes=["sim-swap"], now=time.time() - 601)
        with pytest.raises(CamaraError) as caught:
            verify_token(camara_settings, token)
        assert caught.value.code == "UNAUTHENTICATED"

    def test_tampered_token_is_unauthenticated(self, camara_settings: Settings) -> None:
        """Changing one character of the payload breaks the signature."""
        token, _ = issue_token(camara_settings, client_id="rp_x", scopes=["sim-swap"])
        head, payload, sig = token.split(".")
        forged = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}"
        with pytest.raises(CamaraError):
            verify_token(camara_settings, forged)

    def test_token_of_another_key_is_unauthenticated(self, camara_settings: Settings) -> None:
        """A token signed under another secret key is refused."""
        other = camara_settings.model_copy(update={"secret_key": "another-secret-key-0123456789abcdef"})
        token, _ = issue_token(other, client_id="rp_x", scopes=["sim-swap"])
        with pytest.raises(CamaraError):
            verify_token(camara_settings, token)

    def test_token_carries_its_claims(self, camara_settings: Settings) -> None:
        """Client id, scopes and the bound number come back from a verified token."""
        token, _ = issue_token(
            camara_settings, client_id="rp_x", scopes=["a", "b"], phone_number="+8613800000001"
        )
        claims = verify_token(camara_settings, token)
        assert (claims.client_id, claims.scopes, claims.phone_number) == (
            "rp_x",
            frozenset({"a", "b"}),
            "+8613800000001",
        )

    def test_disabled_client_token_stops_working(self, api: TestClient, make_rp: Any, db: Session) -> None:
        """Once the client is disabled, its unexpired token is refused (401)."""
        rp = make_rp()
        response = api.post("/oauth2/token", data=_form(rp))
        token = response.json()["access_token"]
        clients.disable_client(db, client_id=rp.client_id)
        db.commit()
        answer = api.post(
            CHECK,
            json={"phoneNumber": "+8613800000001", "specifiedDate": "2024-01-01"},
            headers=bearer(token),
        )
        assert answer.status_code == 401
        assert answer.json()["code"] == "UNAUTHENTICATED"

    def test_rotated_secret_revokes_tokens(
        self, api: TestClient, make_rp: Any, db: Session, camara_settings: Settings
    ) -> None:
        """Rotating the secret revokes the tokens issued before it; the new secret gets a working token."""
        rp = make_rp()
        old = api.post("/oauth2/token", data=_form(rp)).json()["access_token"]
        time.sleep(0.01)
        issued = clients.rotate_secret(db, camara_settings, client_id=rp.client_id)
        db.commit()
        body = {"phoneNumber": "+8613800000001", "specifiedDate": "2024-01-01"}
        assert api.post(CHECK, json=body, headers=bearer(old)).status_code == 401
        assert api.post("/oauth2/token", data=_form(rp)).status_code == 401
        rp.secret = issued.secret
        time.sleep(0.01)
        new = api.post("/oauth2/token", data=_form(rp)).json()["access_token"]
        assert api.post(CHECK, json=body, headers=bearer(new)).status_code == 404
