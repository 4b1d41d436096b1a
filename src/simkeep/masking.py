"""Masking personal identifiers wherever a person reads them."""

from __future__ import annotations


def mask_msisdn(msisdn: str) -> str:
    """``+8613800138000`` -> ``+86138****8000``: enough to recognise, not enough to dial."""
    if len(msisdn) <= 8:
        return msisdn[:2] + "*" * (len(msisdn) - 2)
    return msisdn[:-8] + "****" + msisdn[-4:]


def mask_iccid(iccid: str) -> str:
    """Only the last four digits of an ICCID."""
    return "*" * (len(iccid) - 4) + iccid[-4:]


def mask_document(last4: str) -> str:
    """A document number of which only the last four characters are kept."""
    return "**************" + last4


def mask_email(address: str) -> str:
    """``zhang.wei@example.org`` -> ``z***@example.org``."""
    local, _, domain = address.partition("@")
    return (local[:1] + "***@" + domain) if domain else "***"
