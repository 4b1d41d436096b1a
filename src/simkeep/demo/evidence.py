"""The demo holders' online applications: synthetic photos, a real one-time code, honest check records.

The demo ships no one's face, so its document photos and selfies are drawn here: a card with the demo
holder's masked document number and a grey portrait box, and a plain selfie frame. They are stored through
the real evidence vault (cleaned, encrypted) and the one-time code goes through the real code service and
transport. Face matching cannot run on drawn pictures, so the recorded checks say so
(``demo_synthetic_photos``) and send the application to a reviewer, as an unreadable photo would.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.identity import evidence, otp
from simkeep.identity.application import PASS, REVIEW, CheckOutcome, OnlineApplication, check_document_number
from simkeep.lines import repository as lines_repo
from simkeep.models import Line

DEMO_CHECK_REASON = "demo_synthetic_photos"
_DEMO_CHECK_TEXT = (
    "Demo data: the photos are drawn, not taken, so no face match or OCR was run; a reviewer decides."
)


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def document_photo(masked_number: str) -> bytes:
    """A drawn ID-card-like photo: a header band, text lines, the masked number and a portrait box."""
    card = Image.new("RGB", (1000, 630), (226, 236, 245))
    draw = ImageDraw.Draw(card)
    draw.rectangle((0, 0, 1000, 70), fill=(40, 90, 150))
    draw.text((30, 24), "SIMKEEP DEMO DOCUMENT - NOT A REAL ID", fill=(255, 255, 255))
    for row in range(5):
        y = 120 + row * 70
        draw.rectangle((40, y, 160, y + 20), fill=(110, 110, 110))
        draw.rectangle((190, y, 520 + 30 * (row % 2), y + 20), fill=(40, 40, 40))
    draw.text((40, 520), masked_number, fill=(20, 20, 20))
    draw.rectangle((680, 120, 940, 450), fill=(180, 180, 180))
    return _jpeg(card)


def selfie_photo() -> bytes:
    """A drawn selfie frame (no face: the demo ships no one's portrait)."""
    frame = Image.new("RGB", (480, 640), (200, 210, 220))
    draw = ImageDraw.Draw(frame)
    draw.ellipse((140, 150, 340, 400), fill=(170, 170, 175))
    draw.text((150, 590), "SIMKEEP DEMO SELFIE", fill=(40, 40, 40))
    return _jpeg(frame)


def online_application(
    session: Session, settings: Settings, *, holder: Actor, line: Line, document_number: str
) -> tuple[OnlineApplication, list[CheckOutcome]]:
    """Upload the two photos and get a one-time code as the holder would; the checks to record with them."""
    subscriber = lines_repo.holder_of(session, line)
    assert subscriber is not None
    masked = document_number[:3] + "*" * (len(document_number) - 7) + document_number[-4:]
    photo = evidence.store_upload(
        session,
        settings,
        actor=holder,
        kind="document_photo",
        data=document_photo(masked),
        declared_type="image/jpeg",
    )
    selfie = evidence.store_upload(
        session, settings, actor=holder, kind="selfie", data=selfie_photo(), declared_type="image/jpeg"
    )
    channel = "email" if subscriber.contact_email else "sms"
    _row, code = otp.issue_code(
        session, settings, line=line, subscriber=subscriber, purpose="replacement.submit", channel=channel
    )
    application = OnlineApplication(
        document_number=document_number,
        document_photo=photo.reference,
        selfie=selfie.reference,
        one_time_code=code,
    )
    number = check_document_number(str(subscriber.document_type), document_number)
    assert number.verdict == PASS, "the demo holder's document number is well formed"
    checks = [
        number,
        CheckOutcome("ocr", REVIEW, (DEMO_CHECK_REASON, _DEMO_CHECK_TEXT)),
        CheckOutcome("face", REVIEW, (DEMO_CHECK_REASON, _DEMO_CHECK_TEXT)),
    ]
    return application, checks
