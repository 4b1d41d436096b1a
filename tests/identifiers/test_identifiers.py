"""Identifier checks (DOMAIN.md section 6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn

from simkeep.identifiers import (
    InvalidIccid,
    InvalidImsi,
    InvalidMsisdn,
    iccid_problem,
    imsi_problem,
    luhn_valid,
    msisdn_problem,
    normalise_iccid,
    normalise_imsi,
    normalise_msisdn,
)
from simkeep.masking import mask_iccid, mask_msisdn


class TestMsisdn:
    """E.164 numbers."""

    def test_valid_number_is_normalised(self) -> None:
        """Spaces and dashes are removed."""
        assert normalise_msisdn(" +86 138-0013-8000 ") == "+8613800138000"

    @pytest.mark.parametrize(
        "bad", ["13800138000", "+0123456", "+86", "+86abc", "+861380013800012345", "+8612"]
    )
    def test_invalid_numbers_are_refused(self, bad: str) -> None:
        """Numbers without +country, too short, too long or not digits are INVALID_MSISDN."""
        with pytest.raises(InvalidMsisdn):
            normalise_msisdn(bad)

    def test_impossible_number_for_country_is_refused(self) -> None:
        """A well-formed but unassigned Chinese number is refused by the phone-number rules."""
        with pytest.raises(InvalidMsisdn):
            normalise_msisdn("+8610000000")


class TestTrailingNewline:
    """A value read from a file or a JSON body is checked as it is: a trailing newline (which Python's ``$``
    would let through) makes it invalid."""

    def test_each_check_refuses_a_trailing_newline(self) -> None:
        """Number, ICCID and IMSI checks pass the value and refuse it with a newline after it."""
        assert msisdn_problem("+8613800138000") is None
        assert msisdn_problem("+8613800138000\n") is not None
        assert iccid_problem("8986010000000000109") is None
        assert iccid_problem("8986010000000000109\n") is not None
        assert imsi_problem("001010000000001") is None
        assert imsi_problem("001010000000001\n") is not None


class TestIccid:
    """ICCIDs with the Luhn check."""

    def test_valid_iccid(self) -> None:
        """A 19-digit ICCID with a good check digit passes."""
        assert normalise_iccid("8986 0100 0000 0000 109") == "8986010000000000109"

    @pytest.mark.parametrize(
        ("bad", "why"),
        [
            ("8986010000000000108", "Luhn"),
            ("898601000000000010", "19 or 20"),
            ("1986010000000000109", "89"),
            ("89860100000000001X9", "digits"),
        ],
    )
    def test_invalid_iccids_say_why(self, bad: str, why: str) -> None:
        """Each kind of bad ICCID is refused with its own reason."""
        with pytest.raises(InvalidIccid, match=why):
            normalise_iccid(bad)

    @given(st.text(alphabet="0123456789", min_size=1, max_size=25))
    def test_luhn_agrees_with_stdnum(self, digits: str) -> None:
        """The fast Luhn check gives python-stdnum's answer on any digit string."""
        assert luhn_valid(digits) == luhn.is_valid(digits)


class TestImsi:
    """IMSIs."""

    def test_valid_imsi(self) -> None:
        """A 15-digit IMSI passes."""
        assert normalise_imsi("001010000000001") == "001010000000001"

    @pytest.mark.parametrize("bad", ["12345", "0010100000000011", "00101abc"])
    def test_invalid_imsis(self, bad: str) -> None:
        """Too short, too long or non-digit IMSIs are INVALID_IMSI."""
        with pytest.raises(InvalidImsi):
            normalise_imsi(bad)


class TestMasking:
    """What a person sees of identifiers."""

    def test_masks(self) -> None:
        """Numbers keep their prefix and last four digits; ICCIDs only the last four."""
        assert mask_msisdn("+8613800138000") == "+86138****8000"
        assert mask_iccid("8986010000000000109") == "***************0109"
