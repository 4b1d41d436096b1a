"""Reading document photos with the real tesseract, on synthetic ID cards and passport data pages."""

from __future__ import annotations

import stat
from datetime import date
from pathlib import Path

import pytest

from simkeep.config import Settings
from simkeep.identity.documents import make_td3_mrz
from simkeep.identity.ocr import (
    DocumentReader,
    OcrResult,
    mrz_candidates,
    ric_candidates,
    startup_check,
    tesseract_available,
)
from tests.identity_docs import images

RIC = "11010519491231002X"
OTHER_RIC = "110105199003070017"
PASSPORT_NUMBER = "E12345678"
TODAY = date(2025, 6, 1)
MISSING_TESSERACT = "/nonexistent/bin/tesseract"


def passport_mrz(**overrides: object) -> str:
    """The MRZ of a made-up Chinese passport."""
    fields: dict[str, object] = {
        "document_number": PASSPORT_NUMBER,
        "country": "CHN",
        "surname": "Zhang",
        "given_names": "San Feng",
        "birth_date": date(1990, 1, 2),
        "expiry_date": date(2031, 5, 6),
        "sex": "M",
    }
    fields.update(overrides)
    return make_td3_mrz(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reader() -> DocumentReader:
    """A reader using the tesseract on PATH."""
    return DocumentReader(tesseract_cmd="tesseract")


@pytest.fixture(scope="module")
def id_card() -> bytes:
    """A resident ID card showing RIC."""
    return images.id_card_image(RIC)


@pytest.fixture(scope="module")
def passport_page() -> bytes:
    """A passport data page whose MRZ carries PASSPORT_NUMBER."""
    return images.passport_page_image(passport_mrz())


@pytest.fixture
def fake_tesseract_eng_only(tmp_path: Path) -> str:
    """A stand-in tesseract that runs but has only eng language data (a test double for a bare install)."""
    script = tmp_path / "tesseract"
    script.write_text(
        '#!/bin/sh\nif [ "$1" = "--list-langs" ]; then\n'
        "  echo 'List of available languages in \"/nowhere/\" (1):'\n  echo eng\nfi\nexit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


class TestReadIdCard:
    """DocumentReader.read on resident ID cards (chi_sim+eng)."""

    def test_number_on_card_matches_typed(self, reader: DocumentReader, id_card: bytes) -> None:
        """The number printed on the card is found and matches the typed one."""
        result = reader.read(id_card, document_type="cn_ric", typed_number=RIC)
        assert result == OcrResult(True, RIC, None, True, ())
        assert result.passed

    def test_typed_number_is_normalised_before_comparing(
        self, reader: DocumentReader, id_card: bytes
    ) -> None:
        """A typed number with spaces and a lower-case x still matches."""
        result = reader.read(id_card, document_type="cn_ric", typed_number="110105 19491231 002x")
        assert result.matches_typed is True

    def test_phone_photo_is_read(self, reader: DocumentReader, id_card: bytes) -> None:
        """A smaller, blurred, slightly rotated JPEG of the card is upscaled and still read."""
        result = reader.read(images.photographed(id_card), document_type="cn_ric", typed_number=RIC)
        assert result.matches_typed is True

    def test_different_number_is_a_mismatch(self, reader: DocumentReader, id_card: bytes) -> None:
        """A card showing another valid number does not match, and says what it shows."""
        result = reader.read(id_card, document_type="cn_ric", typed_number=OTHER_RIC)
        assert result == OcrResult(True, RIC, None, False, ("number_mismatch",))
        assert not result.passed

    def test_blank_image_has_no_number(self, reader: DocumentReader) -> None:
        """An image with nothing on it reports number_not_found."""
        result = reader.read(images.blank_image(), document_type="cn_ric", typed_number=RIC)
        assert result == OcrResult(True, None, None, False, ("number_not_found",))

    def test_card_without_number_has_no_number(self, reader: DocumentReader) -> None:
        """A card whose number line is empty (labels only) reports number_not_found."""
        result = reader.read(images.id_card_image(None), document_type="cn_ric", typed_number=RIC)
        assert result.reasons == ("number_not_found",)

    def test_invalid_typed_number_is_reported(self, reader: DocumentReader, id_card: bytes) -> None:
        """A typed number with a wrong check character cannot match anything."""
        result = reader.read(id_card, document_type="cn_ric", typed_number="110105194912310021")
        assert (result.matches_typed, result.reasons) == (False, ("typed_number_invalid",))

    def test_unreadable_image_is_reported(self, reader: DocumentReader) -> None:
        """Bytes that are no image are reported, not raised."""
        result = reader.read(b"not an image", document_type="cn_ric", typed_number=RIC)
        assert (result.matches_typed, result.reasons) == (False, ("image_unreadable",))

    def test_image_over_pixel_limit_is_not_decoded(self, id_card: bytes) -> None:
        """An image with more pixels than allowed is refused before decoding (decompression bombs)."""
        small_limit = DocumentReader(max_pixels=100_000)
        result = small_limit.read(id_card, document_type="cn_ric", typed_number=RIC)
        assert result.reasons == ("image_unreadable",)


class TestReadPassport:
    """DocumentReader.read on passport data pages (eng, MRZ)."""

    def test_mrz_number_matches_typed(self, reader: DocumentReader, passport_page: bytes) -> None:
        """The MRZ is found, its check digits hold, and its number matches the typed one."""
        result = reader.read(passport_page, document_type="passport", typed_number="e1234 5678", today=TODAY)
        assert result == OcrResult(True, PASSPORT_NUMBER, passport_mrz(), True, ())

    def test_phone_photo_is_read(self, reader: DocumentReader, passport_page: bytes) -> None:
        """A smaller, blurred, slightly rotated JPEG of the page is still read."""
        photo = images.photographed(passport_page, width=900)
        result = reader.read(photo, document_type="passport", typed_number=PASSPORT_NUMBER, today=TODAY)
        assert result.matches_typed is True

    def test_different_number_is_a_mismatch(self, reader: DocumentReader, passport_page: bytes) -> None:
        """A passport with another number does not match, and says which number it has."""
        result = reader.read(passport_page, document_type="passport", typed_number="E87654321", today=TODAY)
        assert (result.document_number, result.matches_typed) == (PASSPORT_NUMBER, False)
        assert result.reasons == ("number_mismatch",)

    def test_expired_passport_matches_but_does_not_pass(self, reader: DocumentReader) -> None:
        """An expired passport's number matches, but the result carries document_expired and fails."""
        page = images.passport_page_image(passport_mrz(expiry_date=date(2024, 5, 6)))
        result = reader.read(page, document_type="passport", typed_number=PASSPORT_NUMBER, today=TODAY)
        assert (result.matches_typed, result.reasons, result.passed) == (True, ("document_expired",), False)

    def test_mrz_with_bad_check_digit_is_reported(self, reader: DocumentReader) -> None:
        """A page whose MRZ fails a check digit (altered or forged) is reported as such, with no number."""
        line1, line2 = passport_mrz().splitlines()
        forged = f"{line1}\n{line2[:8]}9{line2[9:]}"
        page = images.passport_page_image(forged)
        result = reader.read(page, document_type="passport", typed_number=PASSPORT_NUMBER, today=TODAY)
        assert (result.document_number, result.matches_typed) == (None, False)
        assert result.reasons == ("mrz_check_digit",)

    def test_page_without_mrz_has_no_number(self, reader: DocumentReader) -> None:
        """A page with no machine-readable zone reports number_not_found."""
        page = images.passport_page_image(None)
        result = reader.read(page, document_type="passport", typed_number=PASSPORT_NUMBER, today=TODAY)
        assert result == OcrResult(True, None, None, False, ("number_not_found",))


class TestReaderWithoutTesseract:
    """DocumentReader when tesseract or its language data is missing: unavailable, never an exception."""

    @pytest.mark.parametrize(("document_type", "typed"), [("cn_ric", RIC), ("passport", PASSPORT_NUMBER)])
    def test_missing_binary_is_unavailable(self, id_card: bytes, document_type: str, typed: str) -> None:
        """A tesseract_cmd that does not exist gives an undecided result with ocr_unavailable."""
        reader = DocumentReader(tesseract_cmd=MISSING_TESSERACT)
        result = reader.read(id_card, document_type=document_type, typed_number=typed)
        assert result == OcrResult(False, None, None, None, ("ocr_unavailable",))

    def test_missing_chinese_data_makes_id_cards_unavailable(
        self, id_card: bytes, fake_tesseract_eng_only: str
    ) -> None:
        """Without chi_sim an ID card cannot be read, so the result is unavailable."""
        reader = DocumentReader(tesseract_cmd=fake_tesseract_eng_only)
        result = reader.read(id_card, document_type="cn_ric", typed_number=RIC)
        assert (result.available, result.matches_typed) == (False, None)


class TestTesseractAvailable:
    """tesseract_available: whether the command exists and runs."""

    def test_installed_tesseract_is_available(self) -> None:
        """The tesseract on PATH is found."""
        assert tesseract_available("tesseract")

    def test_missing_command_is_unavailable(self) -> None:
        """A path to nothing is not available."""
        assert not tesseract_available(MISSING_TESSERACT)


class TestStartupCheck:
    """startup_check: a warning for the start-up log when photos cannot be read."""

    def test_complete_install_gives_no_warning(self) -> None:
        """tesseract with chi_sim and eng gives no warning."""
        assert startup_check(Settings(tesseract_cmd="tesseract")) is None

    def test_missing_tesseract_is_warned(self) -> None:
        """A missing tesseract is named, with the consequence (review)."""
        warning = startup_check(Settings(tesseract_cmd=MISSING_TESSERACT))
        assert warning is not None
        assert MISSING_TESSERACT in warning
        assert "sent to review" in warning

    def test_missing_language_data_is_warned(self, fake_tesseract_eng_only: str) -> None:
        """A tesseract without chi_sim is warned about, naming the missing language."""
        warning = startup_check(Settings(tesseract_cmd=fake_tesseract_eng_only))
        assert warning is not None
        assert "chi_sim" in warning
        assert "sent to review" in warning


class TestRicCandidates:
    """ric_candidates: resident ID numbers in OCR text."""

    def test_common_confusions_are_fixed(self) -> None:
        """O for 0, l and I for 1 and a lower-case x are read as the digits they stand for."""
        assert ric_candidates("公民身份号码 I1O1O5l9491231OO2x") == [RIC]

    def test_spaces_inside_the_number_are_ignored(self) -> None:
        """OCR's stray spaces inside the number do not split it."""
        assert ric_candidates("110105 1949 1231 002X") == [RIC]

    def test_bad_check_character_is_dropped(self) -> None:
        """An 18-character run with a wrong check character is no candidate."""
        assert ric_candidates("110105194912310021") == []

    def test_number_run_into_a_digit_is_found(self) -> None:
        """A valid number with a neighbouring digit read into it is still found."""
        assert RIC in ric_candidates(f"7{RIC}")

    def test_separate_lines_are_not_joined(self) -> None:
        """Digits on different lines never form a number together."""
        assert ric_candidates(f"{RIC[:9]}\n{RIC[9:]}") == []


class TestMrzCandidates:
    """mrz_candidates: the two MRZ lines in OCR text, lightly repaired."""

    def test_lines_are_found_among_other_text(self) -> None:
        """The two lines are picked out of the page's other text."""
        mrz = passport_mrz()
        assert mrz_candidates(f"PASSPORT\nZHANG\n{mrz}\n") == [mrz]

    def test_dropped_fillers_and_lookalikes_are_repaired(self) -> None:
        """Fillers dropped or read as «, and spaces, are put right so the check digits can decide."""
        line1, line2 = passport_mrz().splitlines()
        damaged_tail = line2[28:].replace("<<<", "<<", 1).replace("<", "«", 2)
        damaged = f"{line1[:30]}\n{line2[:28]} {damaged_tail}"
        assert mrz_candidates(damaged) == [passport_mrz()]

    def test_letter_in_digit_position_is_fixed(self) -> None:
        """An O where a date digit must stand is read as 0."""
        line1, line2 = passport_mrz().splitlines()
        assert line2[14] == "0"
        misread = f"{line1}\n{line2[:14]}O{line2[15:]}"
        assert mrz_candidates(misread) == [passport_mrz()]

    def test_text_without_mrz_gives_nothing(self) -> None:
        """Ordinary text yields no candidate."""
        assert mrz_candidates("PASSPORT\nSurname ZHANG\nGiven names SAN FENG") == []
