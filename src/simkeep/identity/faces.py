"""Face match: the selfie against the portrait on the document photo (DOMAIN.md section 5).

dlib finds the faces (HOG detector), places five landmarks, aligns each face to a 150x150 chip and maps
it to a 128-dimensional embedding with its ResNet model; the Euclidean distance between the two
embeddings decides. At or below ``accept_below`` the faces are taken for the same person, at or above
``reject_above`` for different people, and the band between goes to a reviewer. Before that, each photo
must show exactly one face, large enough and sharp enough to judge; otherwise the check is rejected with a
reason the applicant can act on (take the photo again).

The models ship in the ``face-recognition-models`` package, found with ``importlib`` and never imported
(DOMAIN.md section 8). They are loaded by :class:`FaceMatcher`, never at import time, once per process:
:func:`get_face_matcher` hands out one matcher per threshold setting. Matching takes a few hundred
milliseconds of CPU; async code calls :func:`compare_off_loop` so the event loop is never blocked.
"""

from __future__ import annotations

import enum
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import dlib
import numpy as np
from numpy.typing import NDArray

from simkeep.config import Settings
from simkeep.identity.images import decode_rgb

#: Longer side, in pixels, of the picture the faces are looked for in; larger photos are reduced first.
DETECTION_MAX_SIDE = 1000
#: Pictures whose longer side is at most this get a second, upsampled look when no face was found.
UPSAMPLE_MAX_SIDE = 800
_CHIP_SIZE = 150  # the ResNet model's input; dlib's own default alignment
_CHIP_PADDING = 0.25
# Sharpness is measured on the face itself: the chip less the padding dlib adds around it.
_FACE_MARGIN = round(_CHIP_SIZE * _CHIP_PADDING / (1 + 2 * _CHIP_PADDING))
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])

_SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
_EMBEDDING_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


class FaceVerdict(enum.StrEnum):
    """The outcome of a face match."""

    ACCEPT = "accept"
    REVIEW = "review"
    REJECT = "reject"


@dataclass(frozen=True)
class FaceCheck:
    """A verdict, the embedding distance (None when no comparison was made) and the reasons.

    ``reasons`` holds, for each finding, a stable snake_case code followed by a sentence the applicant or
    a reviewer can read (codes have no spaces, sentences do): for example ``("selfie_too_blurred",
    "The selfie is too blurred. ...")``.
    """

    verdict: FaceVerdict
    distance: float | None
    reasons: tuple[str, ...]

    @property
    def codes(self) -> tuple[str, ...]:
        """The stable codes among the reasons."""
        return tuple(r for r in self.reasons if " " not in r)

    @property
    def messages(self) -> tuple[str, ...]:
        """The readable sentences among the reasons."""
        return tuple(r for r in self.reasons if " " in r)


# What each code says to the person who has to act on it, by "{which}" photo.
_TEXTS = {
    "no_face": "No face was found on the {which}. {retake}",
    "several_faces": "More than one face is visible on the {which}; only one may be. {retake}",
    "face_too_small": "The face on the {which} is too small to compare. {closer}",
    "too_blurred": "The {which} is too blurred to compare. Hold the camera still, in good light. {retake}",
    "distance_below_accept": "The selfie matches the portrait on the document.",
    "distance_in_review_band": "The selfie may match the portrait on the document; a reviewer will look.",
    "distance_above_reject": "The selfie does not match the portrait on the document.",
}
_RETAKE = {
    "document": "Take a new photo of the whole document, flat and without glare.",
    "selfie": "Take a new selfie, facing the camera, with no one else in the picture.",
}
_CLOSER = {
    "document": "Photograph the document from closer, so that it fills the picture.",
    "selfie": "Hold the camera closer, so that your face fills most of the picture.",
}
_PHOTO_NAME = {"document": "document photo", "selfie": "selfie"}


def _finding(problem: str, which: str) -> tuple[str, str]:
    """The code and sentence of a problem with one of the two photos."""
    code = f"{which}_{problem}" if problem == "too_blurred" else f"{problem}_in_{which}"
    text = _TEXTS[problem].format(which=_PHOTO_NAME[which], retake=_RETAKE[which], closer=_CLOSER[which])
    return code, text


def default_models_dir() -> Path:
    """The ``models/`` folder of the installed face-recognition-models package (found, not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "models"
        if (folder / _EMBEDDING_MODEL).is_file():
            return folder
    msg = "The face models are missing: install the face-recognition-models package"
    raise RuntimeError(msg)


@dataclass(frozen=True)
class _Models:
    """dlib's detector, landmark and embedding models, with the lock that serialises their use."""

    detector: Any
    landmarks: Any
    embedding: Any
    lock: threading.Lock


_models_by_dir: dict[Path, _Models] = {}
_models_lock = threading.Lock()


def _load_models(models_dir: Path) -> _Models:
    """The models in a folder, loaded on first use and shared by every matcher of the process."""
    key = models_dir.resolve()
    with _models_lock:
        models = _models_by_dir.get(key)
        if models is None:
            for name in (_SHAPE_MODEL, _EMBEDDING_MODEL):
                if not (key / name).is_file():
                    msg = f"Face model {name} not found in {key}"
                    raise RuntimeError(msg)
            models = _Models(
                detector=dlib.get_frontal_face_detector(),
                landmarks=dlib.shape_predictor(str(key / _SHAPE_MODEL)),
                embedding=dlib.face_recognition_model_v1(str(key / _EMBEDDING_MODEL)),
                lock=threading.Lock(),
            )
            _models_by_dir[key] = models
        return models


@dataclass(frozen=True)
class _Face:
    """What was found on one photo: an embedding, or the problems that prevent one."""

    embedding: NDArray[np.float64] | None
    findings: tuple[str, ...]


def sharpness(chip: NDArray[np.uint8]) -> float:
    """Variance of the Laplacian (4-neighbour) of a face crop in grey levels: low means blurred.

    Measured on dlib's aligned 150x150 chip, so that it does not depend on the photo's resolution: a sharp
    face gives some hundreds, one blurred beyond use less than about 20.
    """
    grey = chip.astype(np.float64) @ _GREY_WEIGHTS if chip.ndim == 3 else chip.astype(np.float64)
    laplacian = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4.0 * grey[1:-1, 1:-1]
    return float(laplacian.var())


class FaceMatcher:
    """Compares the face on a document photo with the face on a selfie; loads dlib's models when made."""

    def __init__(
        self,
        *,
        accept_below: float,
        reject_above: float,
        min_face_px: int,
        min_sharpness: float,
        models_dir: Path | None = None,
        num_jitters: int = 1,
    ) -> None:
        if not 0.0 <= accept_below <= reject_above:
            msg = f"Face thresholds need 0 <= accept_below ({accept_below}) <= reject_above ({reject_above})"
            raise ValueError(msg)
        if min_face_px < 0 or min_sharpness < 0 or num_jitters < 1:
            msg = "min_face_px and min_sharpness must not be negative, num_jitters at least 1"
            raise ValueError(msg)
        self.accept_below = accept_below
        self.reject_above = reject_above
        self.min_face_px = min_face_px
        self.min_sharpness = min_sharpness
        self.num_jitters = num_jitters
        self._models = _load_models(models_dir if models_dir is not None else default_models_dir())

    def compare(self, document: bytes, selfie: bytes) -> FaceCheck:
        """Match the face on a document photo against a selfie, both as sanitized image bytes."""
        document_pixels, document_scale = decode_rgb(document, max_side=DETECTION_MAX_SIDE)
        selfie_pixels, selfie_scale = decode_rgb(selfie, max_side=DETECTION_MAX_SIDE)
        with self._models.lock:  # dlib's models are not documented as safe to share between threads
            on_document = self._face(document_pixels, document_scale, "document")
            on_selfie = self._face(selfie_pixels, selfie_scale, "selfie")
        findings = on_document.findings + on_selfie.findings
        if on_document.embedding is None or on_selfie.embedding is None:
            return FaceCheck(FaceVerdict.REJECT, None, findings)
        distance = round(float(np.linalg.norm(on_document.embedding - on_selfie.embedding)), 4)
        if distance <= self.accept_below:
            verdict, code = FaceVerdict.ACCEPT, "distance_below_accept"
        elif distance >= self.reject_above:
            verdict, code = FaceVerdict.REJECT, "distance_above_reject"
        else:
            verdict, code = FaceVerdict.REVIEW, "distance_in_review_band"
        return FaceCheck(verdict, distance, (code, _TEXTS[code]))

    def _face(self, pixels: NDArray[np.uint8], scale: float, which: str) -> _Face:
        """The one face on a photo and its embedding, or why there is none to compare."""
        models = self._models
        boxes = models.detector(pixels, 0)
        if len(boxes) == 0 and max(pixels.shape[:2]) <= UPSAMPLE_MAX_SIDE:
            boxes = models.detector(pixels, 1)  # small picture: look again at twice the size
        if len(boxes) != 1:
            return _Face(None, _finding("no_face" if len(boxes) == 0 else "several_faces", which))
        box = boxes[0]
        side_px = min(box.width(), box.height()) / scale  # in the pixels of the photo as uploaded
        if side_px < self.min_face_px:
            return _Face(None, _finding("face_too_small", which))
        shape = models.landmarks(pixels, box)
        chip = np.asarray(dlib.get_face_chip(pixels, shape, size=_CHIP_SIZE, padding=_CHIP_PADDING))
        if sharpness(chip[_FACE_MARGIN:-_FACE_MARGIN, _FACE_MARGIN:-_FACE_MARGIN]) < self.min_sharpness:
            return _Face(None, _finding("too_blurred", which))
        embedding = np.asarray(
            models.embedding.compute_face_descriptor(chip, self.num_jitters), dtype=np.float64
        )
        return _Face(embedding, ())


_matchers: dict[tuple[float, float, int, float], FaceMatcher] = {}
_matchers_lock = threading.Lock()


def get_face_matcher(settings: Settings) -> FaceMatcher:
    """The process's matcher for these settings' thresholds, made (and its models loaded) on first use."""
    key = (
        settings.face_accept_below,
        settings.face_reject_above,
        settings.face_min_size_px,
        settings.face_min_sharpness,
    )
    with _matchers_lock:
        matcher = _matchers.get(key)
        if matcher is None:
            matcher = FaceMatcher(
                accept_below=settings.face_accept_below,
                reject_above=settings.face_reject_above,
                min_face_px=settings.face_min_size_px,
                min_sharpness=settings.face_min_sharpness,
            )
            _matchers[key] = matcher
        return matcher


async def compare_off_loop(matcher: FaceMatcher, document: bytes, selfie: bytes) -> FaceCheck:
    """:meth:`FaceMatcher.compare` in a worker thread, so that the event loop keeps serving."""
    return await anyio.to_thread.run_sync(matcher.compare, document, selfie)
