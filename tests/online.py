"""Building online applications in tests: real face photos on a synthetic ID card, uploads, one-time codes."""

from __future__ import annotations

import io
import re
from functools import lru_cache
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from simkeep.notifications.transports import read_outbox
from tests.identity.photos import require_test_photos
from tests.identity_docs.images import id_card_image


@lru_cache(maxsize=8)
def _portrait(path: Path) -> Image.Image:
    """The head and shoulders of a portrait photo, as an ID card's photo box shows them."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    box_w = int(w * 0.6)
    box_h = int(box_w * 1.25)
    left = (w - box_w) // 2
    return image.crop((left, int(h * 0.05), left + box_w, int(h * 0.05) + box_h))


def id_card_with_portrait(number: str, portrait: Path) -> bytes:
    """A resident ID card image showing ``number`` with a real face photo in the portrait box."""
    card = Image.open(io.BytesIO(id_card_image(number))).convert("RGB")
    face = _portrait(portrait).resize((240, 300))
    card.paste(face, (700, 60))
    out = io.BytesIO()
    card.save(out, format="JPEG", quality=92)
    return out.getvalue()


def photo(name: str) -> Path:
    """One of the real test photos (skips the test when they cannot be had)."""
    return require_test_photos()[name]


def upload(
    client: TestClient, headers: dict[str, str], kind: str, data: bytes, content_type: str = "image/jpeg"
) -> str:
    """Upload evidence through the API; returns its reference."""
    r = client.post(
        "/api/v1/evidence",
        headers=headers,
        data={"kind": kind},
        files={"file": (f"{kind}.jpg", data, content_type)},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["reference"])


def last_code(outbox: Path) -> str:
    """The code in the newest one-time-code message of the outbox."""
    codes = [m for m in read_outbox(outbox) if m.template == "otp"]
    assert codes, "no one-time code was sent"
    found = re.search(r"\b(\d{6})\b", codes[-1].body)
    assert found is not None
    return found.group(1)


def request_code(
    client: TestClient,
    headers: dict[str, str],
    outbox: Path,
    purpose: str = "replacement.submit",
    channel: str = "email",
) -> str:
    """Ask for a one-time code through the API and read it from the outbox."""
    r = client.post("/api/v1/one-time-codes", headers=headers, json={"purpose": purpose, "channel": channel})
    assert r.status_code == 201, r.text
    return last_code(outbox)


def online_application(
    client: TestClient,
    headers: dict[str, str],
    outbox: Path,
    *,
    document_number: str,
    portrait: str = "obama.jpg",
    selfie: str = "obama2.jpg",
) -> dict[str, str]:
    """Upload a document photo and a selfie, get a code: the application fields of POST /replacements."""
    document_ref = upload(
        client, headers, "document_photo", id_card_with_portrait(document_number, photo(portrait))
    )
    selfie_ref = upload(client, headers, "selfie", photo(selfie).read_bytes())
    return {
        "document_number": document_number,
        "document_photo": document_ref,
        "selfie": selfie_ref,
        "one_time_code": request_code(client, headers, outbox),
    }
