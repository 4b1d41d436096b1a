"""Uploaded photos (document pictures, selfies): checked, decoded and re-encoded before anyone sees them.

:func:`sanitize_upload` is the only way an uploaded image enters simkeep. It refuses what is too large,
not an image, of a format other than JPEG, PNG or WebP, mislabelled, truncated, a decompression bomb or
otherwise broken, each with an :class:`UploadRejected` whose ``reason`` the applicant can act upon. What it
accepts it decodes fully, turns upright by its EXIF orientation, converts to sRGB and re-encodes as a
fresh JPEG without any metadata: no EXIF (so no GPS position, no camera serial number), no XMP, no ICC
profile, no comment. Decoding is done by Pillow with its guards left on: ``ImageFile.LOAD_TRUNCATED_IMAGES``
must stay False and ``Image.MAX_IMAGE_PIXELS`` stays in force behind simkeep's own, tighter pixel limit.
"""

from __future__ import annotations

import enum
import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageCms, ImageFile, ImageOps

from simkeep.errors import InvalidInput

#: The formats accepted, by Pillow format name, with the content type each one is served under.
ACCEPTED_TYPES: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
OUTPUT_TYPE = "image/jpeg"
OUTPUT_QUALITY = 90

# Other names clients send for the accepted types. "application/octet-stream" (and no type at all) claims
# nothing about the content, so it is never a mislabel.
_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
_NO_CLAIM = {"", "application/octet-stream", "binary/octet-stream"}
_MAX_ECHOED_TYPE = 80

# Everything Pillow may raise on hostile or damaged input once the file has been recognised.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, struct.error, zlib.error)
_WHITE = (255, 255, 255, 255)

# Formats recognised by their first bytes in order to name them in the refusal.
_REFUSED_MAGIC: tuple[tuple[str, tuple[bytes, ...]], ...] = (
    ("GIF", (b"GIF87a", b"GIF89a")),
    ("TIFF", (b"II*\x00", b"MM\x00*")),
    ("PDF", (b"%PDF-",)),
    ("JPEG 2000", (b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51")),
)
_REFUSED_FTYP_BRANDS = {
    **dict.fromkeys((b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"), "HEIC"),
    b"avif": "AVIF",
    b"avis": "AVIF",
}


class UploadProblem(enum.StrEnum):
    """Why an uploaded photo was refused; stable values used in error details."""

    TOO_LARGE = "TOO_LARGE"
    EMPTY = "EMPTY"
    NOT_AN_IMAGE = "NOT_AN_IMAGE"
    UNSUPPORTED_TYPE = "UNSUPPORTED_TYPE"
    MISLABELLED = "MISLABELLED"
    TRUNCATED = "TRUNCATED"
    TOO_MANY_PIXELS = "TOO_MANY_PIXELS"
    CORRUPT = "CORRUPT"


class UploadRejected(InvalidInput):
    """An uploaded photo that cannot be accepted; ``reason`` (an :class:`UploadProblem`) says why."""

    code = "UPLOAD_REJECTED"

    def __init__(self, message: str, *, reason: UploadProblem, **details: Any) -> None:
        super().__init__(message, reason=reason.value, **details)
        self.reason = reason


@dataclass(frozen=True)
class CleanImage:
    """A sanitized photo: an upright, metadata-free sRGB JPEG and its size in pixels."""

    data: bytes
    content_type: str
    width: int
    height: int


def sanitize_upload(data: bytes, *, declared_type: str | None, max_bytes: int, max_pixels: int) -> CleanImage:
    """Check an uploaded photo and return it re-encoded as a metadata-free JPEG, or raise UploadRejected.

    ``declared_type`` is the content type the client sent (None when it sent none); it must agree with the
    real format read from the file's first bytes. ``max_pixels`` is checked from the image header before
    any pixel is decoded.
    """
    if not data:
        raise UploadRejected("The file is empty. Choose the photo again.", reason=UploadProblem.EMPTY)
    if len(data) > max_bytes:
        raise UploadRejected(
            f"The photo is too large; the limit is {max_bytes // 1_000_000 or 1} MB. Send a smaller photo.",
            reason=UploadProblem.TOO_LARGE,
            max_bytes=max_bytes,
        )
    pillow_format = _sniff(data)
    _check_declared_type(declared_type, ACCEPTED_TYPES[pillow_format])
    if pillow_format == "WEBP":
        _check_riff_length(data)
    image = _open_and_decode(data, pillow_format, max_pixels)
    try:
        rgb = _to_srgb(_upright(image))
    finally:
        image.close()
    return _encode_without_metadata(rgb)


def to_rgb_array(image: CleanImage) -> NDArray[np.uint8]:
    """The pixels of a sanitized photo as an array of shape (height, width, 3)."""
    pixels, _ = decode_rgb(image.data)
    return pixels


def decode_rgb(data: bytes, *, max_side: int | None = None) -> tuple[NDArray[np.uint8], float]:
    """Decode a JPEG, PNG or WebP to RGB pixels, reduced so the longer side is at most ``max_side``.

    Returns the pixels, shape (height, width, 3), and the scale from the file's pixels to the returned
    ones (1.0 when not reduced). Meant for sanitized photos; anything undecodable is an UploadRejected.
    """
    try:
        with Image.open(io.BytesIO(data), formats=list(ACCEPTED_TYPES)) as image:
            width, height = image.size
            scale = 1.0
            if max_side is not None and max(width, height) > max_side:
                scale = max_side / max(width, height)
                target = (max(1, round(width * scale)), max(1, round(height * scale)))
                if image.format == "JPEG":
                    image.draft("RGB", target)  # let libjpeg decode at 1/2, 1/4 or 1/8 size: much faster
                reduced = image.convert("RGB").resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
            else:
                reduced = image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, *_DECODE_ERRORS) as exc:
        msg = "The photo could not be read."
        raise UploadRejected(msg, reason=UploadProblem.CORRUPT) from exc
    return np.asarray(reduced, dtype=np.uint8), scale


# --- steps of sanitize_upload -------------------------------------------------------------------------


def _sniff(data: bytes) -> str:
    """The Pillow format name of an accepted image, from its magic bytes; refuse anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    other = _known_other_format(data)
    if other is not None:
        raise UploadRejected(
            f"{other} files are not accepted. Send the photo as JPEG, PNG or WebP.",
            reason=UploadProblem.UNSUPPORTED_TYPE,
            detected_type=other,
        )
    raise UploadRejected(
        "The file is not an image. Send a photo (JPEG, PNG or WebP).", reason=UploadProblem.NOT_AN_IMAGE
    )


def _known_other_format(data: bytes) -> str | None:
    """The name of a recognised but refused format (PDF, SVG, GIF, TIFF ...), or None."""
    head = data[:32]
    for name, prefixes in _REFUSED_MAGIC:
        if head.startswith(prefixes):
            return name
    if head.startswith(b"BM") and len(data) >= 26 and data[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    if head[4:8] == b"ftyp" and head[8:12] in _REFUSED_FTYP_BRANDS:
        return _REFUSED_FTYP_BRANDS[head[8:12]]
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<?xml", b"<svg", b"<!doctype svg", b"<!--")) and b"<svg" in text:
        return "SVG"
    return None


def _check_declared_type(declared_type: str | None, real_type: str) -> None:
    if declared_type is None:
        return
    declared = declared_type.split(";", 1)[0].strip().lower()
    declared = _TYPE_ALIASES.get(declared, declared)
    if declared in _NO_CLAIM or declared == real_type:
        return
    raise UploadRejected(
        f"The file was sent as {declared[:_MAX_ECHOED_TYPE]} but is really {real_type}. "
        "Send the photo file unchanged.",
        reason=UploadProblem.MISLABELLED,
        declared_type=declared[:_MAX_ECHOED_TYPE],
        detected_type=real_type,
    )


def _check_riff_length(data: bytes) -> None:
    """A WebP file shorter than its RIFF header says was cut off (libwebp would only say "broken")."""
    (riff_length,) = struct.unpack_from("<I", data, 4)
    if len(data) < riff_length + 8:
        raise _truncated()


def _truncated() -> UploadRejected:
    return UploadRejected(
        "The photo file is incomplete (the upload was cut off). Send it again.",
        reason=UploadProblem.TRUNCATED,
    )


def _corrupt() -> UploadRejected:
    return UploadRejected(
        "The photo file is damaged and cannot be read. Take a new photo.", reason=UploadProblem.CORRUPT
    )


def _too_many_pixels(max_pixels: int) -> UploadRejected:
    return UploadRejected(
        f"The photo has too many pixels; the limit is {max_pixels:,}. Send a smaller photo.",
        reason=UploadProblem.TOO_MANY_PIXELS,
        max_pixels=max_pixels,
    )


def _open_and_decode(data: bytes, pillow_format: str, max_pixels: int) -> Image.Image:
    """Read the header, check the pixel count, then decode every pixel; the caller closes the image."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-wide Pillow switch that would let cut-off uploads through as half-grey pictures.
        msg = "PIL.ImageFile.LOAD_TRUNCATED_IMAGES must be False when uploads are sanitized"
        raise RuntimeError(msg)
    try:
        # Image.open reads only the header. Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS)
        # stays in force there: its error, or its warning where warnings are errors, is a refusal too.
        image = Image.open(io.BytesIO(data), formats=[pillow_format])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(max_pixels) from exc
    except _DECODE_ERRORS as exc:
        raise (_truncated() if _says_truncated(exc) else _corrupt()) from exc
    try:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise _corrupt()
        if width * height > max_pixels:
            raise _too_many_pixels(max_pixels)
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_many_pixels(max_pixels) from exc
        except _DECODE_ERRORS as exc:
            raise (_truncated() if _says_truncated(exc) else _corrupt()) from exc
    except BaseException:
        image.close()
        raise
    return image


def _says_truncated(exc: BaseException) -> bool:
    return isinstance(exc, (OSError, EOFError)) and "truncated" in str(exc).lower()


def _to_srgb(image: Image.Image) -> Image.Image:
    """An RGB copy of the image: transparency laid on white, colours converted from its ICC profile."""
    flat = image
    if image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
        image.mode == "P" and "transparency" in image.info
    ):
        background = Image.new("RGBA", image.size, _WHITE)
        background.alpha_composite(image.convert("RGBA"))
        flat = background.convert("RGB")
    elif image.mode in {"I", "I;16", "I;16B", "I;16L", "F"}:
        # 16- and 32-bit greyscale: scale to 8 bits rather than clip everything above 255 to white.
        wide = image.convert("F")
        extrema = wide.getextrema()
        top = float(extrema[1]) if isinstance(extrema[1], (int, float)) and extrema[1] > 0 else 1.0
        flat = wide.point(lambda v: v * (255.0 / top)).convert("L")
    profile = image.info.get("icc_profile")
    if profile and flat.mode in {"RGB", "L", "CMYK"}:
        try:
            converted = ImageCms.profileToProfile(
                flat,
                ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                ImageCms.createProfile("sRGB"),
                outputMode="RGB",
            )
        except (ImageCms.PyCMSError, *_DECODE_ERRORS):
            converted = None  # an unusable profile: keep the pixel values as they are
        if converted is not None:
            return converted
    return flat.convert("RGB")


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; an unreadable EXIF block leaves it as it is."""
    try:
        turned = ImageOps.exif_transpose(image)
    except (*_DECODE_ERRORS, TypeError):
        return image
    return turned if turned is not None else image


def _encode_without_metadata(image: Image.Image) -> CleanImage:
    """Re-encode the pixels alone: a brand-new image has no info dict to carry EXIF, ICC or comments."""
    fresh = Image.new("RGB", image.size)
    fresh.paste(image)
    buffer = io.BytesIO()
    fresh.save(buffer, format="JPEG", quality=OUTPUT_QUALITY, exif=b"")
    return CleanImage(
        data=buffer.getvalue(), content_type=OUTPUT_TYPE, width=fresh.width, height=fresh.height
    )
