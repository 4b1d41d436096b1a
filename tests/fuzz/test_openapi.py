"""Schemathesis over the app's whole OpenAPI document: no 5xx, and responses that match the document.

Every operation of the document is called with generated (valid and invalid) input: as the holder for the
holder's routes, as a relying party with every scope for the CAMARA routes, as an admin for the rest.
Half the numbers generated in paths and CAMARA bodies become the holder's own, so that the operations get
past "no such line" into their real work. NUL characters are not generated here (TestNulCharacters covers
them, with the bug they show on PostgreSQL).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.config import SchemathesisConfig

from simkeep.app import create_app
from simkeep.config import Settings
from tests.conftest import TEST_SECRET
from tests.fuzz.conftest import Target
from tests.helpers import line_headers

#: Operations the signed-in holder calls; staff call everything else.
HOLDER_OPERATIONS = frozenset(
    {
        "POST /api/v1/auth/sign-out",
        "POST /api/v1/evidence",
        "GET /api/v1/evidence/{reference}/content",
        "POST /api/v1/one-time-codes",
        "POST /api/v1/auth/password",
        "POST /api/v1/loss-reports",
        "POST /api/v1/replacements",
        "POST /api/v1/lines/{msisdn}/reinstatement",
        "PUT /api/v1/lines/{msisdn}/sim-change-lock",
        "PUT /api/v1/lines/{msisdn}/contacts",
        "POST /api/v1/replacements/{reference}/activation",
        "POST /api/v1/replacements/{reference}/cancellation",
    }
)
#: The CAMARA routes, called with a relying party's token.
CAMARA_PREFIXES = ("/sim-swap", "/number-recycling")
#: Signing out revokes the token the other operations use; it is fuzzed with a token of its own.
SIGN_OUT = "POST /api/v1/auth/sign-out"


def _document() -> dict[str, Any]:
    """The app's OpenAPI document (building the app opens no database)."""
    app = create_app(Settings(environment="test", secret_key=TEST_SECRET, database_url="sqlite://"))
    return app.openapi()


DOCUMENT = _document()
#: NUL characters are left to TestNulCharacters (PostgreSQL refuses them in text).
CONFIG = SchemathesisConfig.from_dict({"generation": {"allow-x00": False}})
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


def headers_for(case: schemathesis.Case[Any], target: Target) -> dict[str, str]:
    """The caller's token for this operation (a fresh one for signing out)."""
    label = f"{case.method.upper()} {case.path}"
    if label == SIGN_OUT:
        return line_headers(target.client, target.holder.msisdn)
    if case.path.startswith(CAMARA_PREFIXES):
        return target.camara_headers
    return target.holder_headers if label in HOLDER_OPERATIONS else target.admin_headers


def aim(case: schemathesis.Case[Any], target: Target) -> None:
    """Half the generated numbers in paths and CAMARA bodies become the holder's own number."""
    params = case.path_parameters or {}
    if "msisdn" in params and len(str(params["msisdn"])) % 2 == 0:
        params["msisdn"] = target.holder.msisdn
    body = case.body
    if isinstance(body, dict) and "phoneNumber" in body and len(str(body["phoneNumber"])) % 2 == 0:
        body["phoneNumber"] = target.holder.msisdn


FUZZ = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class TestOpenApi:
    """Every operation of the OpenAPI document, with generated input."""

    @schema.parametrize()
    @FUZZ
    def test_no_server_error_and_documented_bodies(
        self, case: schemathesis.Case[Any], target: Target
    ) -> None:
        """No input makes the app answer 5xx, and every response whose status and content type the document
        declares has the body the document gives for it."""
        aim(case, target)
        response = case.call(app=target.app, headers=headers_for(case, target))
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


class TestKnownServerErrors:
    """Inputs the fuzzing found to end in a 5xx (fixed; kept as regression tests)."""

    def test_job_ids_beyond_64_bits_are_refused(self, target: Target) -> None:
        """Retrying a job id no database can hold is a validation error (422 problem details), not a 500."""
        response = target.client.post(
            "/api/v1/jobs:retry", json={"ids": [2**63]}, headers=target.admin_headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "VALIDATION_FAILED"


#: Requests carrying a NUL character where the app queries the database with it.
NUL_REQUESTS = [
    pytest.param(
        "POST", "/api/v1/auth/staff/token", {"username": "a\x00b", "password": "x"}, None, id="staff-sign-in"
    ),
    pytest.param(
        "POST", "/api/v1/auth/line/token", {"msisdn": "+86138\x000000", "service_password": "x"}, None,
        id="line-sign-in",
    ),
    pytest.param("GET", "/api/v1/replacements/RO-%00", None, "admin", id="order-reference"),
    pytest.param("GET", "/api/v1/evidence/EV-%00/content", None, "admin", id="evidence-reference"),
    pytest.param(
        "POST", "/api/v1/auth/password-reset",
        {"msisdn": "+8613800000000", "document_number": "1101\x0005194912", "channel": "email"}, None,
        id="password-reset",
    ),
]  # fmt: skip


class TestNulCharacters:
    """A NUL character in a string the app looks up is an ordinary refusal, never a 500."""

    @pytest.mark.parametrize(("method", "url", "body", "who"), NUL_REQUESTS)
    def test_nul_is_refused_cleanly(
        self,
        target: Target,
        backend: str,
        request: pytest.FixtureRequest,
        method: str,
        url: str,
        body: dict[str, str] | None,
        who: str | None,
    ) -> None:
        """The request is answered below 500, a refusal with problem details, on every database."""
        headers = target.admin_headers if who == "admin" else {}
        response = target.client.request(method, url, json=body, headers=headers)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"]


def _declared(operation: dict[str, Any], status: int, content_type: str) -> bool:
    responses = operation.get("responses", {})
    entry = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
    if entry is None:
        return False
    media = content_type.split(";", maxsplit=1)[0].strip()
    return not entry.get("content") or media in entry["content"]


class TestErrorResponsesDocumented:
    """The document declares the error responses the app gives (status and content type)."""

    def test_every_operation_declares_its_error_responses(self, target: Target) -> None:
        """Called with no token and an empty body, each operation answers with a status and content type
        that the document declares for it."""
        undeclared = []
        for path, operations in DOCUMENT["paths"].items():
            url = path.replace("{msisdn}", target.holder.msisdn).replace("{", "x").replace("}", "")
            for method, operation in operations.items():
                response = target.client.request(method.upper(), url, json={} if method != "get" else None)
                content_type = response.headers.get("content-type", "")
                if response.status_code != 204 and not _declared(
                    operation, response.status_code, content_type
                ):
                    undeclared.append(f"{method.upper()} {path}: {response.status_code} {content_type}")
        assert not undeclared, "\n".join(undeclared)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
