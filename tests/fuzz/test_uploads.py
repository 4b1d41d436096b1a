"""Malformed and hostile uploads to POST /api/v1/evidence, end to end through the app.

Each refused file ends in problem details with a stable code and reason and leaves every table as it was;
the phone photo with EXIF and GPS is accepted, and the image the vault keeps has none of its metadata.
"""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import ExifTags, Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.identity.evidence import decrypt
from simkeep.models import AuditEntry, EvidenceFile
from tests.fuzz.conftest import Target
from tests.helpers import snapshot

#: A signed-in request may touch its token's row (last use); nothing else may change on a refusal.
TOKENS = ("auth_tokens",)


def photo(image_format: str = "JPEG", **save: object) -> bytes:
    """A plain 600 x 400 photo in ``image_format``."""
    out = io.BytesIO()
    Image.new("RGB", (600, 400), (120, 160, 200)).save(out, format=image_format, **save)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG of a few hundred bytes whose header claims ``width`` x ``height`` pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 100_000))
        + png_chunk(b"IEND", b"")
    )


def phone_exif() -> Image.Exif:
    """EXIF as a phone writes it, with the GPS position where the photo was taken."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Phone 12"
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (39.0, 54.0, 26.0),
            ExifTags.GPS.GPSLongitudeRef: "E",
            ExifTags.GPS.GPSLongitude: (116.0, 23.0, 29.0),
        }
    )
    return exif


SVG_WITH_SCRIPT = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(document.cookie)</script></svg>"
)


def post(target: Target, data: bytes, filename: str, content_type: str) -> tuple[int, dict[str, object]]:
    """Upload ``data`` as the signed-in holder; the status and the JSON body."""
    response = target.client.post(
        "/api/v1/evidence",
        headers=target.holder_headers,
        data={"kind": "selfie"},
        files={"file": (filename, data, content_type)},
    )
    return response.status_code, response.json()


class TestMalformedUploads:
    """Refused uploads: a clear problem document, and nothing changed."""

    @pytest.mark.parametrize(
        ("name", "data", "filename", "content_type", "status", "code", "reason"),
        [
            pytest.param(
                "bomb", png_bomb(), "selfie.png", "image/png", 422, "UPLOAD_REJECTED", "TOO_MANY_PIXELS",
                id="decompression-bomb",
            ),
            pytest.param(
                "truncated", photo()[:3000], "selfie.jpg", "image/jpeg", 422, "UPLOAD_REJECTED", "TRUNCATED",
                id="truncated-jpeg",
            ),
            pytest.param(
                "pdf", photo("PDF"), "selfie.jpg", "image/jpeg", 422, "UPLOAD_REJECTED", "UNSUPPORTED_TYPE",
                id="pdf-named-jpg",
            ),
            pytest.param(
                "svg", SVG_WITH_SCRIPT, "selfie.svg", "image/svg+xml", 422, "UPLOAD_REJECTED",
                "UNSUPPORTED_TYPE", id="svg-with-script",
            ),
            pytest.param(
                "svg-as-png", SVG_WITH_SCRIPT, "selfie.png", "image/png", 422, "UPLOAD_REJECTED",
                "UNSUPPORTED_TYPE", id="svg-named-png",
            ),
        ],
    )  # fmt: skip
    def test_refused_with_a_problem_and_no_change(
        self,
        target: Target,
        db: Session,
        name: str,
        data: bytes,
        filename: str,
        content_type: str,
        status: int,
        code: str,
        reason: str,
    ) -> None:
        """A decompression bomb, a truncated JPEG, a PDF named .jpg and an SVG carrying a script are each
        refused with problem details naming the code and the reason, and no table changes."""
        before = snapshot(db, exclude=TOKENS)
        got_status, body = post(target, data, filename, content_type)
        assert (got_status, body["code"]) == (status, code), body
        assert body["details"]["reason"] == reason  # type: ignore[index]
        assert body["status"] == status and body["detail"]
        assert snapshot(db, exclude=TOKENS) == before

    def test_fifty_megabytes_is_refused_before_it_is_read(self, target: Target, db: Session) -> None:
        """A 50 MB body is answered 413 with problem details (REQUEST_TOO_LARGE) and nothing changes."""
        before = snapshot(db, exclude=TOKENS)
        data = b"\xff\xd8\xff" + b"\x00" * 50_000_000
        got_status, body = post(target, data, "selfie.jpg", "image/jpeg")
        assert (got_status, body["code"]) == (413, "REQUEST_TOO_LARGE"), body
        assert body["detail"]
        assert snapshot(db, exclude=TOKENS) == before

    def test_pdf_named_jpg_names_what_it_really_is(self, target: Target) -> None:
        """The refusal of a renamed PDF says it is a PDF and which formats are accepted."""
        _status, body = post(target, photo("PDF"), "selfie.jpg", "image/jpeg")
        assert body["details"]["detected_type"] == "PDF"  # type: ignore[index]
        assert "JPEG, PNG or WebP" in str(body["detail"])

    def test_staff_cannot_upload_even_a_valid_photo(self, target: Target, db: Session) -> None:
        """An admin's token is not a holder's: the upload is refused (401) and nothing is stored."""
        before = snapshot(db, exclude=TOKENS)
        response = target.client.post(
            "/api/v1/evidence",
            headers=target.admin_headers,
            data={"kind": "selfie"},
            files={"file": ("selfie.jpg", photo(), "image/jpeg")},
        )
        assert response.status_code == 401
        assert response.json()["code"] == "LINE_SIGN_IN_REQUIRED"
        assert snapshot(db, exclude=TOKENS) == before


class TestExifStripped:
    """A phone photo with EXIF and GPS is accepted and kept without them."""

    def test_stored_image_has_no_exif_or_gps(self, target: Target, db: Session, settings: Settings) -> None:
        """The upload is accepted (201); the vault's copy, decrypted, is a JPEG with no EXIF, no GPS and
        none of the camera's strings, and only the evidence row and its audit entry were added."""
        data = photo(exif=phone_exif(), comment=b"taken at home")
        with Image.open(io.BytesIO(data)) as sent:  # the upload does carry the position
            assert sent.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        before = snapshot(db, exclude=(*TOKENS, "evidence_files", "audit_log"))
        audit_before = len(db.scalars(select(AuditEntry.id)).all())

        status, body = post(target, data, "selfie.jpg", "image/jpeg")

        assert status == 201, body
        assert body["content_type"] == "image/jpeg"
        db.expire_all()
        row = db.scalar(select(EvidenceFile).where(EvidenceFile.reference == body["reference"]))
        assert row is not None
        assert row.ciphertext is not None and b"PhoneMaker" not in row.ciphertext
        plain = decrypt(settings, row)
        with Image.open(io.BytesIO(plain)) as kept:
            assert kept.format == "JPEG"
            assert kept.size == (600, 400)
            assert not kept.getexif()
            assert not kept.getexif().get_ifd(ExifTags.IFD.GPSInfo)
            assert "exif" not in kept.info and "comment" not in kept.info
        for needle in (b"Exif", b"PhoneMaker", b"Phone 12", b"taken at home"):
            assert needle not in plain
        assert snapshot(db, exclude=(*TOKENS, "evidence_files", "audit_log")) == before
        assert len(db.scalars(select(AuditEntry.id)).all()) == audit_before + 1
