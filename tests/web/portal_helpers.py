"""Helpers of the portal's page tests: the photos an applicant uploads, as files on disk."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.identity.application import CheckOutcome, OnlineApplication
from simkeep.identity.evidence import store_upload
from simkeep.identity.otp import issue_code
from simkeep.identity.service import Evidence
from simkeep.models import Channel, Line, OrderState, Subscriber
from simkeep.replacements import service as orders
from tests import factories
from tests.identity.photos import require_test_photos
from tests.online import id_card_with_portrait


def application_photos(
    folder: Path, *, portrait: str = "obama.jpg", selfie: str = "obama2.jpg"
) -> tuple[str, str]:
    """A photo of the holder's ID card (with a real portrait) and a real selfie, written to ``folder``."""
    photos = require_test_photos()
    document = folder / "id-card.jpg"
    document.write_bytes(id_card_with_portrait(factories.DOCUMENT, photos[portrait]))
    face = folder / "selfie.jpg"
    face.write_bytes(photos[selfie].read_bytes())
    return str(document), str(face)


def _small_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 180, 160)).save(out, format="JPEG")
    return out.getvalue()


def approved_mail_order(db: Session, settings: Settings, msisdn: str) -> str:
    """An online mail order approved and awaiting payment, made through the service with the automatic
    checks given as passed (the wizard's own test runs the real ones); returns its reference."""
    line = db.scalar(select(Line).where(Line.msisdn == msisdn))
    assert line is not None
    holder = db.get(Subscriber, line.subscriber_id)
    assert holder is not None
    actor = Actor(
        kind="line",
        label=f"line:{line.id}",
        line_id=line.id,
        proof_methods=("service_password", "one_time_code"),
    )
    refs = [
        store_upload(
            db, settings, actor=actor, kind=kind, data=_small_jpeg(), declared_type="image/jpeg"
        ).reference
        for kind in ("document_photo", "selfie")
    ]
    _, code = issue_code(
        db, settings, line=line, subscriber=holder, purpose="replacement.submit", channel="email"
    )
    order = orders.submit(
        db,
        settings,
        actor=actor,
        msisdn=msisdn,
        channel=Channel.ONLINE_MAIL,
        evidence=Evidence(),
        application=OnlineApplication(factories.DOCUMENT, refs[0], refs[1], code),
        checks=[CheckOutcome(kind, "pass") for kind in ("document", "ocr", "face")],
    )
    assert order.state == OrderState.AWAITING_PAYMENT, order.state
    return order.reference
