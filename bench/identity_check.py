"""Benchmark the automatic identity check of an online application, on one core.

Run from the repository root: ``python bench/identity_check.py [--runs N]``. It pins itself to one CPU core,
builds a document photo (a synthetic resident ID card, about 1000 px wide, with a real face photo as its
portrait) and a selfie (about 640 px high, another photo of the same person) from the real test photos
(fetched from the registry into a cache on first use, see tests/identity/photos.py), and times:

- ``identity_check``: the face check of the issue (decode both photos, detect the one face on each, place
  the landmarks, embed with dlib's ResNet, compare) through :class:`simkeep.identity.faces.FaceMatcher`;
- ``identity_check_full``: everything an online application runs, through
  :func:`simkeep.identity.application.run_checks`: the document number, tesseract reading the number off the
  document photo, and the face check.

The models are loaded once before timing, as a serving process holds them. The last lines are
``RESULT <name> <value> ms`` for the median and the 95th percentile of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package holds the photo helpers

from tests.identity.photos import fetch_test_photos
from tests.online import id_card_with_portrait

from simkeep.config import Settings
from simkeep.identity.application import run_checks
from simkeep.identity.faces import FaceMatcher, get_face_matcher
from simkeep.identity.images import sanitize_upload

DOCUMENT_NUMBER = "11010519491231002X"
MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000


def _clean(data: bytes) -> bytes:
    """The photo as simkeep stores it after an upload (EXIF stripped, re-encoded)."""
    return sanitize_upload(data, declared_type=None, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS).data


def _selfie(path: Path) -> bytes:
    """A 480x640 portrait crop of a photo, JPEG, as a phone camera capture in the browser sends it."""
    import io

    from PIL import Image

    with Image.open(path) as photo:
        rgb = photo.convert("RGB")
    w, h = rgb.size
    side = min(w, round(h * 0.75))
    left = (w - side) // 2
    crop = rgb.crop((left, 0, left + side, round(side / 0.75))).resize((480, 640))
    out = io.BytesIO()
    crop.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _time(label: str, runs: int, call: Callable[[], object]) -> tuple[float, float]:
    call()  # warm: the first call pays for lazy set-up that a serving process has already paid
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    median = statistics.median(samples)
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    print(f"{label}: {runs} runs, median {median:.0f} ms, p95 {p95:.0f} ms, min {samples[0]:.0f} ms")
    return median, p95


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ["OMP_THREAD_LIMIT"] = "1"
    print(f"cores available to this process: {len(os.sched_getaffinity(0))}")

    photos = fetch_test_photos()
    document = _clean(id_card_with_portrait(DOCUMENT_NUMBER, photos["obama.jpg"]))
    selfie = _clean(_selfie(photos["obama2.jpg"]))
    settings = Settings(environment="test")
    matcher: FaceMatcher = get_face_matcher(settings)
    check = matcher.compare(document, selfie)
    print(f"face verdict {check.verdict}, distance {check.distance}")
    full = run_checks(
        settings, document_type="cn_ric", typed_number=DOCUMENT_NUMBER, document_image=document, selfie=selfie
    )
    print("full check verdicts: " + ", ".join(f"{c.kind}={c.verdict}" for c in full))

    face_median, face_p95 = _time("face check", args.runs, lambda: matcher.compare(document, selfie))
    full_median, full_p95 = _time(
        "full check",
        args.runs,
        lambda: run_checks(
            settings,
            document_type="cn_ric",
            typed_number=DOCUMENT_NUMBER,
            document_image=document,
            selfie=selfie,
        ),
    )
    print(f"RESULT identity_check_full_median_ms {full_median:.0f} ms")
    print(f"RESULT identity_check_full_p95_ms {full_p95:.0f} ms")
    print(f"RESULT identity_check_median_ms {face_median:.0f} ms")
    print(f"RESULT identity_check_p95_ms {face_p95:.0f} ms")


if __name__ == "__main__":
    main()
