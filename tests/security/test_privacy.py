"""Privacy: secrets and identity data never appear in clear in the database, the logs or error messages.

One full run on a private database with real commits, served by the app as in production (its own engine,
lifespan and background threads): a holder signs in (once with a wrong password), applies online with a real
document photo and selfie (once with another person's document number), a reviewer opens the photos, the
holder changes the service password (once with a wrong old one), signs in to the portal with a one-time
code (once with a wrong code), turns the SIM-change lock on and off with a code, and the operator imports
SIM stock with K and OPc (one row with a malformed key). Afterwards the suite searches, for the exact
strings and bytes given in the run:

* the database: on SQLite the raw bytes of the database file and its write-ahead log, on both backends
  every value of every column of every table (text, JSON and binary);
* the logs: every structlog event (captured before rendering), everything written to stdout and stderr,
  and the standard library's log records;
* every response body, refusals included.

The one-time codes legitimately reach the outbox (it stands for the SMS centre and the mail server) and
nothing else; the document number's last four characters are kept in clear by design (to read to a holder
at the counter), so the search is for the full number and its first fourteen characters.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from simkeep.app import create_app
from simkeep.config import Settings
from simkeep.db.base import Base
from simkeep.db.engine import make_session_factory
from simkeep.jobs.worker import Worker
from simkeep.models import StaffRole
from simkeep.sims.importer import import_sims
from simkeep.web.security import CSRF_COOKIE
from tests import factories
from tests.helpers import line_headers, staff_headers
from tests.online import id_card_with_portrait, last_code, photo, request_code, upload
from tests.security.conftest import VICTIM_DOCUMENT, csrf_pair

NEW_PASSWORD = "Fresh-Keeper-2026!"
WRONG_PASSWORDS = ("Wrong-Guess-7731", "Old-Pass-Wrong-88")
K = "7A1B2C3D4E5F60718293A4B5C6D7E8F9"
OPC = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"
BAD_K = "7A1B2C3D4E5F60718293A4B5C6D7E8FZ"
#: Runs of text where a six-digit code could appear by chance: timestamps and hex digests.
NOISE = re.compile(rb"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?|[0-9a-fA-F]{32,}")


class Secrets:
    """Everything the run must never leave in clear: strings and byte chunks of the photos."""

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.codes: list[str] = []
        self.photos: dict[str, bytes] = {}

    def chunks(self) -> dict[str, bytes]:
        """Three 48-byte pieces from inside each photo (no header bytes, which any JPEG shares)."""
        out: dict[str, bytes] = {}
        for name, data in self.photos.items():
            for i, at in enumerate((len(data) // 3, len(data) // 2, 2 * len(data) // 3)):
                out[f"{name}[{i}]"] = data[at : at + 48]
        return out

    def found_in(self, haystack: bytes) -> list[str]:
        """The names of the secrets found in ``haystack``."""
        found = []
        lowered = haystack.lower()
        for name, value in self.strings.items():
            if value.lower().encode() in lowered:
                found.append(name)
        scrubbed = NOISE.sub(b"~", haystack)
        for code in self.codes:
            if re.search(rb"(?<!\d)" + code.encode() + rb"(?!\d)", scrubbed):
                found.append(f"one-time code {code}")
        for name, chunk in self.chunks().items():
            if chunk in haystack:
                found.append(f"photo {name}")
        return found


def dump_database(engine: Engine) -> bytes:
    """Every value of every column of every table, as bytes (binary as is, the rest as text)."""
    parts: list[bytes] = []
    with make_session_factory(engine)() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                for value in row:
                    if value is None:
                        continue
                    if isinstance(value, bytes | bytearray | memoryview):
                        parts.append(bytes(value))
                    elif isinstance(value, dict | list):
                        parts.append(json.dumps(value, ensure_ascii=False).encode())
                    else:
                        parts.append(str(value).encode())
    return b"\n".join(parts)


def database_files(settings: Settings) -> dict[str, bytes]:
    """The raw SQLite database file and its write-ahead log (nothing on PostgreSQL)."""
    if not settings.database_url.startswith("sqlite"):
        return {}
    path = Path(settings.database_url.removeprefix("sqlite:///"))
    files = {}
    for suffix in ("", "-wal"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            files[candidate.name] = candidate.read_bytes()
    return files


def full_run(
    client: TestClient, settings: Settings, engine: Engine, tmp_path: Path
) -> tuple[Secrets, list[Any]]:
    """Everything a holder, a reviewer and an operator do in one life of a line; the secrets and every
    response."""
    outbox = Path(settings.otp_outbox_dir)
    secrets = Secrets()
    secrets.strings.update(
        {
            "document number": factories.DOCUMENT,
            "document number, first 14": factories.DOCUMENT[:14],
            "another document number": VICTIM_DOCUMENT,
            "service password": factories.PASSWORD,
            "new service password": NEW_PASSWORD,
            "K": K,
            "OPc": OPC,
            "malformed K": BAD_K,
            **{f"wrong password {i}": p for i, p in enumerate(WRONG_PASSWORDS)},
        }
    )
    responses: list[Any] = []
    with make_session_factory(engine)() as setup:
        store = factories.store(setup)
        factories.staff(setup, StaffRole.REVIEWER, username="priv-reviewer")
        factories.staff(setup, StaffRole.ADMIN, username="priv-admin", store_row=store)
        holder = factories.holder(setup, settings)
        setup.commit()
        msisdn = holder.msisdn

    # Sign in: once wrong, then right.
    responses.append(
        client.post(
            "/api/v1/auth/line/token", json={"msisdn": msisdn, "service_password": WRONG_PASSWORDS[0]}
        )
    )
    headers = line_headers(client, msisdn)

    # Apply online with real photos: first with another person's document number, then rightly.
    document = id_card_with_portrait(factories.DOCUMENT, photo("obama.jpg"))
    selfie = photo("obama2.jpg").read_bytes()
    secrets.photos.update({"document photo": document, "selfie": selfie})
    fields = {
        "document_number": VICTIM_DOCUMENT,
        "document_photo": upload(client, headers, "document_photo", document),
        "selfie": upload(client, headers, "selfie", selfie),
        "one_time_code": request_code(client, headers, outbox),
    }
    secrets.codes.append(fields["one_time_code"])
    body = {"msisdn": msisdn, "channel": "online_mail", **fields}
    responses.append(client.post("/api/v1/replacements", json=body, headers=headers))
    fields = {
        "document_number": factories.DOCUMENT,
        "document_photo": upload(client, headers, "document_photo", document),
        "selfie": upload(client, headers, "selfie", selfie),
        "one_time_code": request_code(client, headers, outbox),
    }
    secrets.codes.append(fields["one_time_code"])
    applied = client.post(
        "/api/v1/replacements", json={"msisdn": msisdn, "channel": "online_mail", **fields}, headers=headers
    )
    assert applied.status_code == 201, applied.text
    responses.append(applied)

    # A reviewer opens both photos (the cleaned images simkeep keeps, encrypted).
    reviewer = staff_headers(client, "priv-reviewer")
    for kind in ("document_photo", "selfie"):
        opened = client.get(f"/api/v1/evidence/{fields[kind]}/content", headers=reviewer)
        assert opened.status_code == 200, opened.text
        secrets.photos[f"{kind} as kept"] = opened.content

    # Change the service password: once with a wrong old one, then rightly.
    responses.append(
        client.post(
            "/api/v1/auth/password",
            headers=headers,
            json={
                "old_password": WRONG_PASSWORDS[1],
                "document_number": factories.DOCUMENT,
                "new_password": NEW_PASSWORD,
            },
        )
    )
    changed = client.post(
        "/api/v1/auth/password",
        headers=headers,
        json={
            "old_password": factories.PASSWORD,
            "document_number": factories.DOCUMENT,
            "new_password": NEW_PASSWORD,
        },
    )
    assert changed.status_code == 204, changed.text

    # The portal: number and new password, a wrong code, then the right one.
    seed, token = csrf_pair(settings)
    client.cookies.set(CSRF_COOKIE, seed)
    step = client.post(
        "/portal/sign-in",
        data={"csrf": token, "msisdn": msisdn, "password": NEW_PASSWORD, "channel": "email"},
        follow_redirects=False,
    )
    assert step.status_code == 303, step.text[:300]
    code = last_code(outbox)
    wrong = f"{(int(code) + 500_001) % 1_000_000:06d}"
    secrets.codes += [code, wrong]
    responses.append(client.post("/portal/sign-in/code", data={"csrf": token, "code": wrong}))
    done = client.post("/portal/sign-in/code", data={"csrf": token, "code": code}, follow_redirects=False)
    assert done.status_code == 303, done.text[:300]
    client.cookies.clear()

    # The SIM-change lock on, then off with a code.
    headers = line_headers(client, msisdn, NEW_PASSWORD)
    lock = f"/api/v1/lines/{msisdn}/sim-change-lock"
    assert client.put(lock, json={"on": True}, headers=headers).status_code == 200
    code = request_code(client, headers, outbox, purpose="lock.off")
    secrets.codes.append(code)
    off = client.put(lock, json={"on": False, "one_time_code": code}, headers=headers)
    assert off.status_code == 200, off.text

    # SIM stock with secrets, one row with a malformed key.
    stock = tmp_path / "stock.csv"
    rows = [
        "iccid,imsi,kind,location,store,batch,auth_algorithm,k,opc",
        f"{factories.make_iccid(990001)},{factories.make_imsi(990001)},physical,warehouse,,P1,milenage,{K},{OPC}",
        f"{factories.make_iccid(990002)},{factories.make_imsi(990002)},physical,warehouse,,P1,milenage,{BAD_K},{OPC}",
    ]
    stock.write_text("\n".join(rows) + "\n")
    result = import_sims(engine, settings, stock)
    assert (result.imported, result.rejected) == (1, 1), result
    responses.append(repr(result))

    # A forged carrier call carrying the document number (refused and logged), then the job worker
    # delivers every notification the run caused (logged).
    forged = json.dumps({"event_id": "e1", "tracking_number": factories.DOCUMENT, "status": "delivered"})
    responses.append(
        client.post(
            "/api/v1/shipping/demo/events",
            content=forged,
            headers={"x-simkeep-timestamp": "1", "x-simkeep-signature": f"sha256={factories.DOCUMENT}"},
        )
    )
    Worker(settings, make_session_factory(engine), worker_id="privacy").run(exit_when_idle=True)
    return secrets, responses


def _text(response: Any) -> bytes:
    return response.encode() if isinstance(response, str) else bytes(response.content)


class TestNothingInClear:
    """After a full run, no secret is found anywhere simkeep writes."""

    def test_database_logs_and_messages_hold_no_secret(
        self,
        fresh: tuple[Engine, Settings],
        tmp_path: Path,
        capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Identity numbers, service passwords (right and wrong), one-time codes (right and wrong), K and
        OPc (good and malformed) and the photos' bytes are found neither in the database (raw files and
        every column), nor in any log, nor in any response, refusals included."""
        engine, settings = fresh
        caplog.set_level(logging.DEBUG)
        with TestClient(create_app(settings)) as client:
            secrets, responses = full_run(client, settings, engine, tmp_path)
        places: dict[str, bytes] = {"database (every column)": dump_database(engine)}
        places.update({f"file {name}": data for name, data in database_files(settings).items()})
        out, err = capfd.readouterr()
        places["stdout"] = out.encode()
        places["stderr"] = err.encode()
        places["log records"] = caplog.text.encode()
        for i, response in enumerate(responses):
            places[f"response {i}"] = _text(response)
        leaks = {place: found for place, data in places.items() if (found := secrets.found_in(data))}
        assert leaks == {}
        # The search finds what it looks for: the kept selfie in the bytes that served it, and each code
        # sent in the outbox (the SMS centre's and mail server's side, where codes belong).
        assert secrets.found_in(b"x" + secrets.photos["selfie as kept"]) == [
            f"photo selfie as kept[{i}]" for i in range(3)
        ]
        outbox = b"".join(p.read_bytes() for p in Path(settings.otp_outbox_dir).rglob("*") if p.is_file())
        sent = [c for c in secrets.codes if c != secrets.codes[-2]]  # all but the wrong one typed
        assert {f"one-time code {c}" for c in sent} <= set(secrets.found_in(outbox))
        assert "webhook.refused" in err and "worker.started" in err  # the logs were captured
