"""QR codes of activation codes: the PNG decodes to the code, the SVG draws the same modules."""

from __future__ import annotations

import io
import re

import zxingcpp
from PIL import Image

from simkeep.esim import protocol
from simkeep.esim.qr import qr_matrix, qr_png, qr_svg

CODE = protocol.activation_code(
    "smdp.example.net", "7KQ2M-X9ABC-1234F-GHJKL", confirmation_code_required=True
)


class TestActivationCode:
    """The activation code's text (SGP.22 section 4.1)."""

    def test_with_confirmation_code(self) -> None:
        """With a confirmation code required the code ends in $$1 (no OID)."""
        assert CODE == "LPA:1$smdp.example.net$7KQ2M-X9ABC-1234F-GHJKL$$1"

    def test_without_confirmation_code(self) -> None:
        """Without one it is address and matching id only."""
        assert (
            protocol.activation_code("a.example", "M1", confirmation_code_required=False)
            == "LPA:1$a.example$M1"
        )


class TestQr:
    """The PNG and the SVG of the activation code."""

    def test_png_decodes_to_the_code(self) -> None:
        """A QR decoder reads the PNG back as the activation code."""
        image = Image.open(io.BytesIO(qr_png(CODE)))
        assert image.format == "PNG"
        assert [found.text for found in zxingcpp.read_barcodes(image)] == [CODE]

    def test_svg_draws_the_same_modules(self) -> None:
        """The SVG's squares are exactly the dark modules of the code's QR matrix."""
        svg = qr_svg(CODE)
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        size = 0.1  # qrcode draws one module per 0.1 mm for each unit of box size (8)
        unit = size * 8
        squares = {
            (round(float(x) / unit), round(float(y) / unit))
            for x, y in re.findall(r"M([\d.]+),([\d.]+)H", svg)
        }
        dark = {(c, r) for r, row in enumerate(qr_matrix(CODE)) for c, on in enumerate(row) if on}
        assert squares == dark

    def test_png_matrix_matches(self) -> None:
        """The PNG's pixels follow the same matrix (sampled at each module's centre)."""
        matrix = qr_matrix(CODE)
        image = Image.open(io.BytesIO(qr_png(CODE))).convert("L")
        box = image.width // len(matrix)
        sampled = [
            [image.getpixel((c * box + box // 2, r * box + box // 2)) == 0 for c in range(len(matrix))]
            for r in range(len(matrix))
        ]
        assert sampled == matrix
