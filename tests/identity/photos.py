"""Real face photos for the face-match tests and benchmark, fetched from the package registry on first use.

The source distribution of ``face_recognition==1.3.0`` on PyPI ships ``tests/test_images/``: three photos
of Barack Obama (``obama.jpg``, ``obama2.jpg``, ``obama3.jpg``), two partial crops of one of them, the same
portrait as a 32-bit PNG, and one photo of Joe Biden (``biden.jpg``). Each shows exactly one face. They
are not committed here; :func:`fetch_test_photos` downloads the sdist with pip into a cache folder
(``$SIMKEEP_TEST_PHOTOS_DIR``, else ``~/.cache/simkeep-test-photos``) and keeps only those images.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

SDIST = "face_recognition-1.3.0.tar.gz"
REQUIREMENT = "face_recognition==1.3.0"
SDIST_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
PHOTO_NAMES = (
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
    "32bit.png",
    "biden.jpg",
)
_MEMBER_PREFIX = "face_recognition-1.3.0/tests/test_images/"
_PIP_TIMEOUT_S = 300


class PhotosUnavailable(RuntimeError):
    """The test photos are not cached and could not be fetched from the registry."""


def cache_dir() -> Path:
    """Where the photos are kept between runs."""
    configured = os.environ.get("SIMKEEP_TEST_PHOTOS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "simkeep-test-photos"


def fetch_test_photos(directory: Path | None = None) -> dict[str, Path]:
    """The photos by file name, downloaded and extracted first if they are not cached yet."""
    target = (directory or cache_dir()) / "face_recognition-1.3.0"
    if all((target / name).is_file() for name in PHOTO_NAMES):
        return {name: target / name for name in PHOTO_NAMES}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as scratch:
        sdist = _download_sdist(Path(scratch))
        staged = Path(scratch) / "photos"
        _extract_photos(sdist, staged)
        if not target.exists():
            try:
                staged.rename(target)  # atomic: a concurrent run sees all the photos or none
            except OSError:
                if not target.exists():
                    raise
    return {name: target / name for name in PHOTO_NAMES}


def require_test_photos() -> dict[str, Path]:
    """The photos, or skip the calling test with the reason when the registry cannot be reached."""
    import pytest

    try:
        return fetch_test_photos()
    except PhotosUnavailable as exc:
        pytest.skip(f"real face photos unavailable: {exc}")


def _download_sdist(scratch: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        REQUIREMENT,
        "-d",
        str(scratch),
    ]
    try:
        result = subprocess.run(  # noqa: S603 - a fixed command line, no shell
            command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"could not run pip download {REQUIREMENT}: {exc}"
        raise PhotosUnavailable(msg) from exc
    sdist = scratch / SDIST
    if result.returncode != 0 or not sdist.is_file():
        tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        msg = f"pip download {REQUIREMENT} failed (is the package registry reachable?): {tail}"
        raise PhotosUnavailable(msg)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:  # not a network problem: fail rather than skip
        msg = f"{SDIST} has SHA-256 {digest}, expected {SDIST_SHA256}"
        raise RuntimeError(msg)
    return sdist


def _extract_photos(sdist: Path, destination: Path) -> None:
    """Copy out the wanted images only, by their known names (no path from the archive is trusted)."""
    destination.mkdir()
    with tarfile.open(sdist, "r:gz") as archive:
        for name in PHOTO_NAMES:
            member = archive.getmember(_MEMBER_PREFIX + name)
            source = archive.extractfile(member) if member.isfile() else None
            if source is None:
                msg = f"{name} is not a regular file in {SDIST}"
                raise PhotosUnavailable(msg)
            with source:
                (destination / name).write_bytes(source.read())


# --- pictures made from the photos ------------------------------------------------------------------------

#: Where the face is on each photo, (left, top, side) in pixels, as dlib's HOG detector places it.
FACE_BOXES: dict[str, tuple[int, int, int]] = {
    "obama.jpg": (366, 136, 259),
    "obama2.jpg": (164, 302, 311),
    "obama3.jpg": (646, 302, 310),
    "obama_partial_face2.jpg": (376, 161, 216),
    "32bit.png": (164, 302, 311),
    "biden.jpg": (439, 233, 311),
}
CARD_SIZE = (1000, 630)
SELFIE_SIZE = (480, 640)


def _crop_around_face(
    photo: Image.Image, box: tuple[int, int, int], *, width: float, top: float, aspect: float
) -> Image.Image:
    """A crop ``width`` face sides wide, starting ``top`` sides above the face, of height/width ``aspect``."""
    left, face_top, side = box
    crop_w = min(round(width * side), photo.width)
    crop_h = min(round(crop_w * aspect), photo.height)
    x0 = min(max(0, left + side // 2 - crop_w // 2), photo.width - crop_w)
    y0 = min(max(0, round(face_top - top * side)), photo.height - crop_h)
    return photo.crop((x0, y0, x0 + crop_w, y0 + crop_h))


def selfie(path: Path, size: tuple[int, int] = SELFIE_SIZE) -> Image.Image:
    """A portrait selfie (480x640 by default) made from a photo; the face spans about 40% of its width."""
    with Image.open(path) as photo:
        rgb = photo.convert("RGB")
    crop = _crop_around_face(rgb, FACE_BOXES[path.name], width=2.4, top=0.8, aspect=size[1] / size[0])
    return crop.resize(size, Image.Resampling.LANCZOS)


def document(path: Path, size: tuple[int, int] = CARD_SIZE) -> Image.Image:
    """A photo of an ID-card-like document (1000x630 by default) with the photo's face as its portrait."""
    card = Image.new("RGB", size, (214, 229, 238))
    draw = ImageDraw.Draw(card)
    w, h = size
    draw.rectangle((0, 0, w, round(h * 0.12)), fill=(40, 90, 150))
    for row in range(6):
        y = round(h * (0.22 + row * 0.11))
        draw.rectangle(
            (round(w * 0.05), y, round(w * (0.2 + 0.05 * (row % 3))), y + round(h * 0.035)), fill=(90, 90, 90)
        )
        draw.rectangle(
            (round(w * 0.25), y, round(w * (0.5 + 0.04 * (row % 2))), y + round(h * 0.035)), fill=(20, 20, 20)
        )
    portrait_size = (round(w * 0.28), round(h * 0.57))
    with Image.open(path) as photo:
        rgb = photo.convert("RGB")
    crop = _crop_around_face(
        rgb, FACE_BOXES[path.name], width=1.8, top=0.55, aspect=portrait_size[1] / portrait_size[0]
    )
    card.paste(crop.resize(portrait_size, Image.Resampling.LANCZOS), (round(w * 0.66), round(h * 0.25)))
    return card


def encode(image: Image.Image, image_format: str = "JPEG", **options: object) -> bytes:
    """The image as file bytes, as a phone or browser would upload it."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()
