"""QR codes of activation codes, as PNG and SVG (the ``qrcode`` package)."""

from __future__ import annotations

import io

import qrcode
import qrcode.constants
from qrcode.image.pil import PilImage
from qrcode.image.pure import PyPNGImage
from qrcode.image.svg import SvgPathImage


def _code(text: str) -> qrcode.QRCode[PilImage | PyPNGImage]:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4)
    code.add_data(text)
    code.make(fit=True)
    return code


def qr_matrix(text: str) -> list[list[bool]]:
    """The QR code's modules (True: dark), with its quiet zone."""
    return [list(row) for row in _code(text).get_matrix()]


def qr_png(text: str) -> bytes:
    """The QR code of ``text`` as a PNG image."""
    out = io.BytesIO()
    _code(text).make_image(image_factory=PilImage).save(out)
    return out.getvalue()


def qr_svg(text: str) -> str:
    """The QR code of ``text`` as an SVG document (one path; scales without blur)."""
    out = io.BytesIO()
    _code(text).make_image(image_factory=SvgPathImage).save(out)
    return out.getvalue().decode()
