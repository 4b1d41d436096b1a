"""Uploaded photos: what is accepted, what is refused and why, and that no metadata survives."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile

from simkeep.errors import InvalidInput, http_status_for
from simkeep.identity.images import (
    CleanImage,
    UploadProblem,
    UploadRejected,
    decode_rgb,
    sanitize_upload,
    to_rgb_array,
)
from tests.identity.photos import encode

MAX_BYTES = 10_000_000
MAX_PIXELS = 40_000_000
RED = (220, 30, 30)
BLUE = (30, 30, 220)


def picture(size: tuple[int, int] = (300, 200)) -> Image.Image:
    """A small picture with detail in it (a Mandelbrot set), as RGB."""
    return Image.effect_mandelbrot(size, (-2.0, -1.0, 1.0, 1.0), 60).convert("RGB")


def sanitize(data: bytes, declared_type: str | None = None, **limits: int) -> CleanImage:
    """sanitize_upload with the default limits of the settings."""
    return sanitize_upload(
        data,
        declared_type=declared_type,
        max_bytes=limits.get("max_bytes", MAX_BYTES),
        max_pixels=limits.get("max_pixels", MAX_PIXELS),
    )


def refusal(data: bytes, declared_type: str | None = None, **limits: int) -> UploadRejected:
    """The UploadRejected that sanitizing raises."""
    with pytest.raises(UploadRejected) as caught:
        sanitize(data, declared_type, **limits)
    return caught.value


def jpeg_markers(data: bytes) -> list[int]:
    """The markers of a JPEG's header segments, up to the start of the scan."""
    assert data[:2] == b"\xff\xd8"
    markers, offset = [], 2
    while offset < len(data):
        assert data[offset] == 0xFF
        marker = data[offset + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack_from(">H", data, offset + 2)
        offset += 2 + length
    return markers


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels but whose data is a few bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + png_chunk(b"IEND", b"")
    )


def exif_with_gps() -> Image.Exif:
    """EXIF as a phone writes it: camera, time and the GPS position of the place the photo was taken."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Phone 12"
    exif[ExifTags.Base.DateTime] = "2024:05:01 08:30:00"
    exif.get_ifd(ExifTags.IFD.GPSInfo).update(
        {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (39.0, 54.0, 26.0),
            ExifTags.GPS.GPSLongitudeRef: "E",
            ExifTags.GPS.GPSLongitude: (116.0, 23.0, 29.0),
        }
    )
    return exif


class TestSanitizeUploadAccepts:
    """JPEG, PNG and WebP are decoded and re-encoded as a fresh JPEG."""

    @pytest.mark.parametrize(
        ("image_format", "declared_type"),
        [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")],
    )
    def test_accepted_formats_come_out_as_jpeg(self, image_format: str, declared_type: str) -> None:
        """Each accepted format is re-encoded as a JPEG of the same size, not passed through."""
        data = encode(picture(), image_format)
        clean = sanitize(data, declared_type)
        assert clean.content_type == "image/jpeg"
        assert (clean.width, clean.height) == (300, 200)
        assert clean.data[:3] == b"\xff\xd8\xff"
        assert clean.data != data
        with Image.open(io.BytesIO(clean.data)) as out:
            assert out.format == "JPEG"
            assert out.mode == "RGB"
            assert out.size == (300, 200)

    def test_pixels_survive_reencoding(self) -> None:
        """The picture itself is kept: the re-encoded pixels stay close to the original ones."""
        original = picture()
        clean = sanitize(encode(original, "PNG"))
        difference = np.abs(to_rgb_array(clean).astype(int) - np.asarray(original).astype(int))
        assert difference.mean() < 4

    @pytest.mark.parametrize(
        "declared_type",
        [None, "image/jpg", "image/pjpeg", "IMAGE/JPEG; charset=binary", "application/octet-stream"],
    )
    def test_equivalent_or_absent_declared_types_are_accepted(self, declared_type: str | None) -> None:
        """Aliases, parameters and case are tolerated; no type, or octet-stream, claims nothing."""
        assert sanitize(encode(picture(), "JPEG"), declared_type).content_type == "image/jpeg"

    def test_transparency_is_laid_on_white(self) -> None:
        """A transparent PNG comes out with white where it was transparent, not black."""
        image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
        image.paste((200, 0, 0, 255), (0, 0, 50, 100))
        pixels = to_rgb_array(sanitize(encode(image, "PNG"), "image/png"))
        assert pixels[50, 90].min() > 240
        assert pixels[50, 10, 0] > 180
        assert pixels[50, 10, 1] < 40

    def test_sixteen_bit_greyscale_is_scaled_not_clipped(self) -> None:
        """A 16-bit greyscale PNG keeps its shades instead of turning white."""
        ramp = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (64, 1))
        image = Image.fromarray(ramp)
        pixels = to_rgb_array(sanitize(encode(image, "PNG"), "image/png"))
        assert pixels[32, 5].max() < 30
        assert 100 < pixels[32, 128].mean() < 160


class TestSanitizeUploadMetadata:
    """Nothing but the pixels leaves sanitizing: EXIF (and its GPS), XMP, ICC and comments are gone."""

    def test_exif_gps_xmp_icc_and_comment_are_stripped_from_jpeg(self) -> None:
        """A phone JPEG full of metadata comes out with none at all."""
        icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>39,54N</exif:GPSLatitude></x:xmpmeta>'
        data = encode(picture(), "JPEG", exif=exif_with_gps(), icc_profile=icc, comment=b"secret", xmp=xmp)
        with Image.open(io.BytesIO(data)) as uploaded:  # the input does carry it all
            assert uploaded.getexif().get_ifd(ExifTags.IFD.GPSInfo)
            assert {"exif", "icc_profile", "comment", "xmp"} <= set(uploaded.info)

        clean = sanitize(data, "image/jpeg")

        with Image.open(io.BytesIO(clean.data)) as out:
            assert not out.getexif()
            assert not out.getexif().get_ifd(ExifTags.IFD.GPSInfo)
            assert not {"exif", "icc_profile", "comment", "xmp"} & set(out.info)
        # Only JFIF (APP0), quantisation and Huffman tables, frame and scan headers: no APP1-APP15, no COM.
        assert set(jpeg_markers(clean.data)) <= {0xE0, 0xDB, 0xC4, 0xC0, 0xDD, 0xDA}
        for needle in (b"Exif", b"PhoneMaker", b"xmpmeta", b"secret", b"ICC_PROFILE"):
            assert needle not in clean.data

    def test_exif_and_text_are_stripped_from_png(self) -> None:
        """A PNG's eXIf and text chunks are not carried into the output."""
        from PIL import PngImagePlugin

        text = PngImagePlugin.PngInfo()
        text.add_text("Comment", "home address")
        data = encode(picture(), "PNG", exif=exif_with_gps(), pnginfo=text)
        clean = sanitize(data, "image/png")
        with Image.open(io.BytesIO(clean.data)) as out:
            assert not out.getexif()
        assert b"Exif" not in clean.data
        assert b"home address" not in clean.data

    def test_orientation_6_is_applied(self) -> None:
        """A photo stored sideways with EXIF orientation 6 comes out upright: width and height swap."""
        stored = Image.new("RGB", (200, 100), BLUE)
        stored.paste(RED, (0, 0, 100, 100))  # left half red: once turned 90 degrees clockwise, the top half
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = 6
        clean = sanitize(encode(stored, "JPEG", exif=exif), "image/jpeg")
        assert (clean.width, clean.height) == (100, 200)
        pixels = to_rgb_array(clean)
        assert pixels.shape == (200, 100, 3)
        assert pixels[30, 50, 0] > 180  # top: red
        assert pixels[170, 50, 2] > 180  # bottom: blue
        with Image.open(io.BytesIO(clean.data)) as out:
            assert ExifTags.Base.Orientation not in out.getexif()


class TestSanitizeUploadRefusals:
    """Every refusal is an UploadRejected with a reason the applicant can act upon."""

    def test_refusal_is_an_invalid_input_with_a_stable_code(self) -> None:
        """The error carries code UPLOAD_REJECTED and its reason in the details, and maps to 422."""
        error = refusal(b"")
        assert isinstance(error, InvalidInput)
        assert error.code == "UPLOAD_REJECTED"
        assert error.details["reason"] == "EMPTY"
        assert http_status_for(error) == 422

    def test_empty_file(self) -> None:
        """An empty upload is EMPTY."""
        assert refusal(b"", "image/jpeg").reason is UploadProblem.EMPTY

    def test_fifty_megabytes_is_too_large(self) -> None:
        """A 50 MB upload is TOO_LARGE before it is even looked at, and the message states the limit."""
        error = refusal(b"\xff\xd8\xff" + b"\x00" * 50_000_000, "image/jpeg")
        assert error.reason is UploadProblem.TOO_LARGE
        assert "10 MB" in error.message
        assert error.details["max_bytes"] == MAX_BYTES

    def test_decompression_bomb_is_refused_from_its_header(self) -> None:
        """A tiny PNG claiming 100000 x 100000 pixels is TOO_MANY_PIXELS, at once."""
        bomb = png_claiming(100_000, 100_000)
        assert len(bomb) < 200
        started = time.perf_counter()
        error = refusal(bomb, "image/png")
        assert error.reason is UploadProblem.TOO_MANY_PIXELS
        assert time.perf_counter() - started < 1.0

    def test_pixel_limit_is_checked_before_decoding(self) -> None:
        """A header over the limit is refused as TOO_MANY_PIXELS although its data would not even decode."""
        error = refusal(png_claiming(8000, 8000), "image/png")  # 64 MP: over 40 MP, under Pillow's own guard
        assert error.reason is UploadProblem.TOO_MANY_PIXELS
        assert error.details["max_pixels"] == MAX_PIXELS

    def test_valid_image_over_the_configured_pixel_limit(self) -> None:
        """A genuine image with more pixels than configured is TOO_MANY_PIXELS."""
        data = encode(Image.new("1", (3000, 3000)), "PNG")
        assert refusal(data, "image/png", max_pixels=1_000_000).reason is UploadProblem.TOO_MANY_PIXELS

    def test_pillow_bomb_guard_counts_as_too_many_pixels(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Pillow's own guard (Image.MAX_IMAGE_PIXELS) stays in force and its error is TOO_MANY_PIXELS."""
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        data = encode(picture((100, 100)), "PNG")
        assert refusal(data, "image/png", max_pixels=10**9).reason is UploadProblem.TOO_MANY_PIXELS

    @pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
    def test_file_cut_in_half_is_truncated(self, image_format: str) -> None:
        """A JPEG, PNG or WebP cut off half way is TRUNCATED."""
        data = encode(picture((600, 400)), image_format)
        assert refusal(data[: len(data) // 2]).reason is UploadProblem.TRUNCATED

    def test_truncated_images_are_not_let_through_by_the_pillow_switch(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If something turned on ImageFile.LOAD_TRUNCATED_IMAGES, sanitizing refuses to run at all."""
        monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
        data = encode(picture(), "JPEG")
        with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
            sanitize(data[: len(data) // 2], "image/jpeg")

    def test_damaged_data_is_corrupt(self) -> None:
        """A PNG whose compressed data is damaged is CORRUPT."""
        data = bytearray(encode(picture(), "PNG"))
        start = data.index(b"IDAT") + 20
        for i in range(start, start + 40):
            data[i] ^= 0x55
        assert refusal(bytes(data), "image/png").reason is UploadProblem.CORRUPT

    @pytest.mark.parametrize("declared_type", ["image/jpeg", None])
    def test_pdf_is_refused(self, declared_type: str | None) -> None:
        """A PDF, even sent as image/jpeg (a file renamed .jpg), is UNSUPPORTED_TYPE."""
        error = refusal(encode(picture(), "PDF"), declared_type)
        assert error.reason is UploadProblem.UNSUPPORTED_TYPE
        assert error.details["detected_type"] == "PDF"
        assert "JPEG, PNG or WebP" in error.message

    def test_svg_with_script_is_refused(self) -> None:
        """An SVG (here carrying a script) is UNSUPPORTED_TYPE, whatever it is declared as."""
        svg = (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b"<script>alert(document.cookie)</script></svg>"
        )
        for declared_type in ("image/svg+xml", "image/png"):
            error = refusal(svg, declared_type)
            assert error.reason is UploadProblem.UNSUPPORTED_TYPE
            assert error.details["detected_type"] == "SVG"

    @pytest.mark.parametrize(("image_format", "name"), [("GIF", "GIF"), ("TIFF", "TIFF"), ("BMP", "BMP")])
    def test_other_image_formats_are_unsupported(self, image_format: str, name: str) -> None:
        """GIF, TIFF and BMP images are UNSUPPORTED_TYPE and named in the details."""
        error = refusal(encode(picture(), image_format))
        assert error.reason is UploadProblem.UNSUPPORTED_TYPE
        assert error.details["detected_type"] == name

    def test_heic_is_unsupported(self) -> None:
        """An iPhone HEIC photo is UNSUPPORTED_TYPE (recognised by its ftyp box)."""
        heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100
        assert refusal(heic, "image/heic").details["detected_type"] == "HEIC"

    def test_png_declared_as_jpeg_is_mislabelled(self) -> None:
        """A PNG sent as image/jpeg is MISLABELLED; the details give both types."""
        error = refusal(encode(picture(), "PNG"), "image/jpeg")
        assert error.reason is UploadProblem.MISLABELLED
        assert error.details["declared_type"] == "image/jpeg"
        assert error.details["detected_type"] == "image/png"

    @pytest.mark.parametrize("declared_type", ["image/png", "application/pdf", "image/gif", "text/html"])
    def test_jpeg_declared_as_something_else_is_mislabelled(self, declared_type: str) -> None:
        """A JPEG sent under another content type is MISLABELLED."""
        assert refusal(encode(picture(), "JPEG"), declared_type).reason is UploadProblem.MISLABELLED

    @pytest.mark.parametrize("data", [b"hello, world", b"MZ\x90\x00" + b"\x00" * 60, b"\x00" * 32])
    def test_unrecognised_bytes_are_not_an_image(self, data: bytes) -> None:
        """Text, an executable or zeros are NOT_AN_IMAGE."""
        assert refusal(data, "image/jpeg").reason is UploadProblem.NOT_AN_IMAGE


class TestDecodeRgb:
    """Pixels for the face code: full size, or reduced with the scale that was applied."""

    def test_to_rgb_array_is_height_by_width_by_three(self) -> None:
        """to_rgb_array gives uint8 pixels of shape (height, width, 3)."""
        pixels = to_rgb_array(sanitize(encode(picture(), "PNG")))
        assert pixels.shape == (200, 300, 3)
        assert pixels.dtype == np.uint8

    def test_large_image_is_reduced_with_its_scale(self) -> None:
        """With max_side, the longer side is reduced to it and the scale says by how much."""
        data = sanitize(encode(picture((2000, 1500)), "JPEG")).data
        pixels, scale = decode_rgb(data, max_side=1000)
        assert pixels.shape == (750, 1000, 3)
        assert scale == pytest.approx(0.5)

    def test_small_image_is_left_alone(self) -> None:
        """An image already within max_side is returned at scale 1."""
        pixels, scale = decode_rgb(sanitize(encode(picture(), "JPEG")).data, max_side=1000)
        assert pixels.shape == (200, 300, 3)
        assert scale == 1.0

    def test_undecodable_bytes_are_corrupt(self) -> None:
        """Bytes that are no image are refused as CORRUPT."""
        with pytest.raises(UploadRejected) as caught:
            decode_rgb(b"not an image", max_side=1000)
        assert caught.value.reason is UploadProblem.CORRUPT
