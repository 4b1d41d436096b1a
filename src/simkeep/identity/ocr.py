"""Reading document photos with tesseract: does the photo show the number the customer typed?

A resident ID card is read with ``chi_sim+eng`` (the card is printed in Chinese) and searched for 18-character
numbers with a correct MOD 11-2 check character; a passport data page is read with ``eng`` and searched for
the two lines of its machine-readable zone, whose check digits must all hold. Reading never raises for a
bad photo or a missing tesseract: the result says what was found and why not, and a caller sends anything
but a clean match to a reviewer.

Each read tries a few renderings of the photo (plain, softened, black and white) and stops at the first that
yields a checksum-valid number, so a clear photo costs one tesseract run.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import TYPE_CHECKING

from simkeep.identity.documents import (
    DocumentProblem,
    InvalidDocument,
    PassportMrz,
    normalise_document_number,
    parse_passport_mrz,
    ric_checksum_ok,
)

if TYPE_CHECKING:
    from PIL import Image

    from simkeep.config import Settings

LANGUAGES = {"cn_ric": "chi_sim+eng", "passport": "eng"}
REQUIRED_LANGUAGES = frozenset({"chi_sim", "eng"})
_MRZ_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<"
# --psm 11 finds sparse text anywhere on a card; --psm 6 keeps the MRZ's two lines whole and in order.
_CONFIG = {
    "cn_ric": "--psm 11",
    "passport": f"--psm 6 -c tessedit_char_whitelist={_MRZ_ALPHABET}",
}
_MIN_WIDTH = 1000
_MAX_SIDE = 2400
_MAX_UPSCALE = 3.0

# Characters OCR puts in place of digits on an ID number line (O for 0, l or I for 1, ...).
_RIC_CONFUSIONS = str.maketrans(
    {"O": "0", "o": "0", "D": "0", "Q": "0", "I": "1", "l": "1", "|": "1", "x": "X"}
)
_RIC_RUN = re.compile(r"[0-9X]{18,}")
# In the MRZ: digits read as letters where a digit must stand, and the other way round.
_TO_DIGIT = str.maketrans(
    {"O": "0", "D": "0", "Q": "0", "I": "1", "L": "1", "Z": "2", "S": "5", "G": "6", "B": "8"}
)
_TO_LETTER = str.maketrans({"0": "O", "1": "I", "2": "Z", "5": "S", "6": "G", "8": "B"})
# Characters OCR takes for one another in a document number, each mapped to one representative.
_LOOKALIKE_CLASS = str.maketrans("ODQIJLZSGB", "0001112568")
_MRZ_DIGIT_SPANS = ((9, 10), (13, 20), (21, 28), (43, 44))
_MRZ_FILLER_LOOKALIKES = str.maketrans({"«": "<", "‹": "<", "〈": "<", "(": "<", "[": "<", "{": "<"})


@dataclass(frozen=True)
class OcrResult:
    """What reading a document photo found.

    ``matches_typed`` is None when the photo could not be judged (no OCR, tesseract failed). A photo passes
    only when ``matches_typed`` is True and ``reasons`` is empty; see :attr:`passed`.
    """

    available: bool
    document_number: str | None
    mrz: str | None
    matches_typed: bool | None
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """Whether the photo shows the typed number with nothing else wrong."""
        return self.matches_typed is True and not self.reasons


def _unavailable() -> OcrResult:
    return OcrResult(
        available=False, document_number=None, mrz=None, matches_typed=None, reasons=("ocr_unavailable",)
    )


def _failed(reason: str) -> OcrResult:
    return OcrResult(available=True, document_number=None, mrz=None, matches_typed=None, reasons=(reason,))


@cache
def tesseract_available(cmd: str = "tesseract") -> bool:
    """Whether ``cmd`` is a tesseract that runs (checked once per command)."""
    path = shutil.which(cmd)
    if path is None:
        return False
    try:
        done = subprocess.run(  # noqa: S603 - the command comes from settings, not from a request
            [path, "--version"], capture_output=True, check=False, timeout=15
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@cache
def tesseract_languages(cmd: str = "tesseract") -> frozenset[str]:
    """The language data tesseract has installed (empty when tesseract is missing)."""
    path = shutil.which(cmd)
    if path is None:
        return frozenset()
    try:
        done = subprocess.run(  # noqa: S603 - the command comes from settings, not from a request
            [path, "--list-langs"], capture_output=True, text=True, check=False, timeout=15
        )
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    # The first line names the tessdata folder; each further line is one language.
    lines = (done.stdout + "\n" + done.stderr).splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and " " not in line.strip())


def startup_check(settings: Settings) -> str | None:
    """A warning for the start-up log when document photos cannot be read automatically, else None."""
    cmd = settings.tesseract_cmd
    if not tesseract_available(cmd):
        return (
            f"tesseract ({cmd!r}) was not found or does not run: document photos will be sent to review. "
            "Install tesseract-ocr with the chi_sim and eng language data, or set SIMKEEP_TESSERACT_CMD."
        )
    missing = sorted(REQUIRED_LANGUAGES - tesseract_languages(cmd))
    if missing:
        return (
            f"tesseract lacks the language data {', '.join(missing)}: "
            "document photos will be sent to review. "
            "Install tesseract-ocr-chi-sim and tesseract-ocr-eng (or their traineddata files)."
        )
    return None


# --- Finding numbers in text ------------------------------------------------------------------------------


def ric_candidates(text: str) -> list[str]:
    """Resident ID numbers with a correct check character in OCR text, exact 18-character runs first."""
    exact: list[str] = []
    inside: list[str] = []
    for raw in text.splitlines():
        line = "".join(raw.translate(_RIC_CONFUSIONS).split())
        for run in _RIC_RUN.findall(line):
            if len(run) == 18:
                exact.append(run)
                continue
            # A run longer than 18 (a neighbouring digit read into it): try each 18-character window.
            inside.extend(run[i : i + 18] for i in range(len(run) - 17))
    found = [number for number in exact + inside if ric_checksum_ok(number)]
    return list(dict.fromkeys(found))


def _clean_mrz_line(raw: str) -> str:
    return "".join(raw.translate(_MRZ_FILLER_LOOKALIKES).split()).upper()


def _fit_first_line(line: str) -> str | None:
    """The first MRZ line padded or trimmed at its end, where only fillers stand; None if it cannot be."""
    if len(line) > 44:
        return line[:44] if set(line[44:]) <= {"<"} else None
    return line.ljust(44, "<") if line.endswith("<") else None


def _fit_second_line(line: str) -> str | None:
    """The second MRZ line with its longest run of fillers stretched or shrunk to make 44 characters."""
    if len(line) == 44:
        return line
    runs = list(re.finditer(r"<{2,}", line))
    if not runs:
        return None
    run = max(runs, key=lambda m: m.end() - m.start())
    length = run.end() - run.start() + 44 - len(line)
    if length < 1:
        return None
    return line[: run.start()] + "<" * length + line[run.end() :]


def _fix_second_line(line: str) -> str:
    chars = list(line)
    for start, end in _MRZ_DIGIT_SPANS:
        for i in range(start, end):
            chars[i] = chars[i].translate(_TO_DIGIT)
    for i in range(10, 13):
        chars[i] = chars[i].translate(_TO_LETTER)
    return "".join(chars)


def _fix_first_line(line: str) -> str:
    return line[:2] + line[2:].translate(_TO_LETTER)


def mrz_candidates(text: str) -> list[str]:
    """Two-line TD3 machine-readable zones found in OCR text, lightly repaired (fillers, look-alikes)."""
    lines = [_clean_mrz_line(raw) for raw in text.splitlines()]
    lines = [line for line in lines if line]
    found: list[str] = []
    for first, second in itertools.pairwise(lines):
        if not re.match(r"P[A-Z0-9<][A-Z0-9<]{3}", first) or "<<" not in first or not 30 <= len(first) <= 50:
            continue
        if not 38 <= len(second) <= 50 or not re.fullmatch(r"[A-Z0-9<]+", first + second):
            continue
        line1, line2 = _fit_first_line(first), _fit_second_line(second)
        if line1 is not None and line2 is not None:
            found.append(f"{_fix_first_line(line1)}\n{_fix_second_line(line2)}")
    return found


# --- The reader -------------------------------------------------------------------------------------------


class DocumentReader:
    """Reads a document photo and compares the number on it with the number the customer typed."""

    def __init__(
        self,
        *,
        tesseract_cmd: str = "tesseract",
        timeout_s: float = 30.0,
        max_pixels: int = 40_000_000,
    ) -> None:
        self.tesseract_cmd = tesseract_cmd
        self.timeout_s = timeout_s
        self.max_pixels = max_pixels

    @classmethod
    def from_settings(cls, settings: Settings) -> DocumentReader:
        """A reader configured from settings."""
        return cls(tesseract_cmd=settings.tesseract_cmd, max_pixels=settings.upload_max_pixels)

    def available(self, document_type: str) -> bool:
        """Whether tesseract and the language data for ``document_type`` are installed."""
        if not tesseract_available(self.tesseract_cmd):
            return False
        return set(LANGUAGES[document_type].split("+")) <= tesseract_languages(self.tesseract_cmd)

    def read(
        self, image: bytes, *, document_type: str, typed_number: str, today: date | None = None
    ) -> OcrResult:
        """Read ``image`` and say whether it shows ``typed_number``.

        Raises :class:`InvalidDocument` only for an unknown ``document_type``; everything about the photo,
        the typed number or tesseract is reported in the result.
        """
        if document_type not in LANGUAGES:
            normalise_document_number(document_type, typed_number)  # raises for the unknown type
        if not self.available(document_type):
            return _unavailable()
        try:
            typed = normalise_document_number(document_type, typed_number)
        except InvalidDocument:
            return OcrResult(True, None, None, False, ("typed_number_invalid",))
        base = self._load(image)
        if base is None:
            return OcrResult(True, None, None, False, ("image_unreadable",))
        if document_type == "cn_ric":
            return self._read_ric(base, typed)
        return self._read_passport(base, typed, today or date.today())  # noqa: DTZ011 - a calendar date

    # -- per document type

    def _read_ric(self, base: Image.Image, typed: str) -> OcrResult:
        for picture in _renderings(base):
            text = self._ocr(picture, "cn_ric")
            if text is None:
                return _failed("ocr_failed")
            candidates = ric_candidates(text)
            if candidates:
                if typed in candidates:
                    return OcrResult(True, typed, None, True, ())
                return OcrResult(True, candidates[0], None, False, ("number_mismatch",))
        return OcrResult(True, None, None, False, ("number_not_found",))

    def _read_passport(self, base: Image.Image, typed: str, today: date) -> OcrResult:
        problem: tuple[str, str] | None = None  # the last unreadable MRZ and why
        for picture in _renderings(base):
            text = self._ocr(picture, "passport")
            if text is None:
                return _failed("ocr_failed")
            for candidate in mrz_candidates(text):
                try:
                    mrz, passport = _parse_read_mrz(candidate, typed, today)
                except InvalidDocument as exc:
                    mrz = candidate
                    check = exc.reason is DocumentProblem.MRZ_CHECK_DIGIT
                    problem = (mrz, "mrz_check_digit" if check else "mrz_format")
                    continue
                reasons: list[str] = []
                if passport.document_number != typed:
                    reasons.append("number_mismatch")
                if passport.expiry_date < today:
                    reasons.append("document_expired")
                matches = passport.document_number == typed
                return OcrResult(True, passport.document_number, mrz, matches, tuple(reasons))
        if problem is not None:
            return OcrResult(True, None, problem[0], False, (problem[1],))
        return OcrResult(True, None, None, False, ("number_not_found",))

    # -- image and tesseract

    def _load(self, image: bytes) -> Image.Image | None:
        """The photo upright, grey, contrast-stretched and of a workable size; None if unreadable."""
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(image)) as source:
                if source.width * source.height > self.max_pixels:
                    return None
                upright = ImageOps.exif_transpose(source)
                grey = upright.convert("L")
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            return None
        scale = 1.0
        if grey.width < _MIN_WIDTH:
            scale = min(_MIN_WIDTH / grey.width, _MAX_UPSCALE)
        elif max(grey.size) > _MAX_SIDE:
            scale = _MAX_SIDE / max(grey.size)
        if scale != 1.0:
            size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
            grey = grey.resize(size, Image.Resampling.LANCZOS)
        return ImageOps.autocontrast(grey, cutoff=1)

    def _ocr(self, picture: Image.Image, document_type: str) -> str | None:
        """Tesseract's text for ``picture``; None when tesseract fails or times out."""
        import pytesseract

        # One thread per tesseract process: the web workers already run several reads side by side, and
        # OpenMP's threads in each would only compete for the same cores.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        # pytesseract keeps the command in a module global; a process uses one command (from settings).
        pytesseract.pytesseract.tesseract_cmd = self.tesseract_cmd
        try:
            return str(
                pytesseract.image_to_string(
                    picture,
                    lang=LANGUAGES[document_type],
                    config=_CONFIG[document_type],
                    timeout=self.timeout_s,
                )
            )
        except (pytesseract.TesseractError, pytesseract.TesseractNotFoundError, RuntimeError, OSError):
            return None


def _parse_read_mrz(mrz: str, typed: str, today: date) -> tuple[str, PassportMrz]:
    """Parse an MRZ as read; if its check digits fail, try the typed number where OCR may have confused it.

    OCR confuses 0 with O, 1 with I, 8 with B and so on, and the document number may hold either. When the
    number read differs from the typed one only by such look-alikes, the typed number is put in its place
    and the zone parsed again: the document number's check digit and the composite check digit, printed
    on the document, must then both hold for it.
    """
    try:
        return mrz, parse_passport_mrz(mrz, today=today)
    except InvalidDocument as exc:
        line1, line2 = mrz.split("\n")
        field, wanted = line2[:9], typed.ljust(9, "<")
        confusable = field != wanted and field.translate(_LOOKALIKE_CLASS) == wanted.translate(
            _LOOKALIKE_CLASS
        )
        if exc.reason is not DocumentProblem.MRZ_CHECK_DIGIT or len(typed) > 9 or not confusable:
            raise
    repaired = f"{line1}\n{wanted}{line2[9:]}"
    return repaired, parse_passport_mrz(repaired, today=today)


def _renderings(base: Image.Image) -> Iterator[Image.Image]:
    """The photo as tesseract first sees it, then softened, then in black and white; made only when needed.

    Sharp synthetic or scanned print is sometimes misread (6 as 0) where a slightly softened copy is not; a
    black-and-white copy drops faint security printing behind the text.
    """
    from PIL import ImageFilter

    yield base
    yield base.filter(ImageFilter.GaussianBlur(1))
    threshold = _otsu_threshold(base.histogram())
    yield base.point(lambda value: 255 if value > threshold else 0)


def _otsu_threshold(histogram: list[int]) -> int:
    """The grey level that best separates a picture's dark and light pixels (Otsu's method)."""
    total = sum(histogram)
    weighted_total = sum(level * count for level, count in enumerate(histogram))
    below = weighted_below = 0
    best_level, best_spread = 127, -1.0
    for level, count in enumerate(histogram):
        below += count
        if below == 0:
            continue
        above = total - below
        if above == 0:
            break
        weighted_below += level * count
        mean_below = weighted_below / below
        mean_above = (weighted_total - weighted_below) / above
        spread = below * above * (mean_below - mean_above) ** 2
        if spread > best_spread:
            best_level, best_spread = level, spread
    return best_level
