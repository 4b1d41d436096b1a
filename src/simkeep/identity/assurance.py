"""Assurance levels and how proofs combine into one (DOMAIN.md section 5)."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Assurance(enum.IntEnum):
    """How sure simkeep is that the person asking is the holder, weakest first."""

    NONE = 0
    LOW = 1  # biographical data, or a signed-in session: may suspend, never replace
    MEDIUM = 2  # the service password
    HIGH = 3  # service password + one-time code, or document + face + one-time code
    IN_PERSON = 4  # document and face checked at a counter by a clerk

    @property
    def label(self) -> str:
        """The stored, lower-case name."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Assurance:
        """The level named ``label``."""
        return cls[label.upper()]


class Method(enum.StrEnum):
    """Proof methods simkeep knows. Issue-by-issue more are checked; each names the evidence it takes."""

    BIOGRAPHICAL = "biographical"
    SERVICE_PASSWORD = "service_password"  # noqa: S105 - a method name, not a secret
    IN_PERSON_DOCUMENT = "in_person_document"
    ONE_TIME_CODE = "one_time_code"
    DOCUMENT_PHOTO = "document_photo"
    FACE_MATCH = "face_match"
    REVIEWER_DECISION = "reviewer_decision"
    ICCID_DIGITS = "iccid_digits"


def combine(methods: Iterable[str]) -> Assurance:
    """The assurance that a set of passed proofs gives together."""
    passed = set(methods)
    if Method.IN_PERSON_DOCUMENT in passed:
        return Assurance.IN_PERSON
    if {Method.DOCUMENT_PHOTO, Method.FACE_MATCH, Method.ONE_TIME_CODE} <= passed:
        return Assurance.HIGH
    if {Method.SERVICE_PASSWORD, Method.ONE_TIME_CODE} <= passed:
        return Assurance.HIGH
    if Method.SERVICE_PASSWORD in passed:
        return Assurance.MEDIUM
    if passed & {Method.BIOGRAPHICAL, Method.ONE_TIME_CODE}:
        return Assurance.LOW
    return Assurance.NONE


# What each action needs. Suspending makes a line safer and needs little; anything riskier needs strong proof.
REQUIRED: dict[str, Assurance] = {
    "loss.report": Assurance.LOW,
    "loss.reinstate": Assurance.HIGH,
    "replacement.submit": Assurance.MEDIUM,
    "replacement.auto_approve": Assurance.HIGH,
    "replacement.activate": Assurance.MEDIUM,
    "lock.on": Assurance.LOW,
    "lock.off": Assurance.HIGH,
    "contact.change": Assurance.HIGH,
}
