"""Request and response bodies of the replacement API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simkeep.models import Channel, OrderState


class Address(BaseModel):
    """Where a mailed SIM goes."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    recipient: str = Field(min_length=1, max_length=100)
    phone: str = Field(min_length=5, max_length=20)
    region: str = Field(min_length=1, max_length=100, description="Province or region.")
    city: str = Field(min_length=1, max_length=100)
    street: str = Field(min_length=1, max_length=200)
    postal_code: str | None = Field(default=None, max_length=12)


class ReplacementCreate(BaseModel):
    """An application for a replacement SIM."""

    model_config = ConfigDict(extra="forbid")

    msisdn: str = Field(min_length=1, max_length=32, examples=["+8613800138000"])
    channel: Channel
    delivery_address: Address | None = Field(
        default=None, description="For online_mail; default: the holder's."
    )
    service_password: str | None = Field(default=None, max_length=64, description="Re-entered by the holder.")
    in_person_document_number: str | None = Field(
        default=None, max_length=32, description="Store channel: the document number the clerk saw."
    )
    document_number: str | None = Field(
        default=None, max_length=32, description="Online: as on the document."
    )
    document_photo: str | None = Field(
        default=None, max_length=16, description="Online: an upload's reference."
    )
    selfie: str | None = Field(default=None, max_length=16, description="Online: an upload's reference.")
    one_time_code: str | None = Field(
        default=None, pattern=r"^[0-9]{6}$", description="Online: the code sent."
    )


class Fee(BaseModel):
    """A fee in minor units and for display."""

    amount_minor: int
    currency: str
    display: str


class ReplacementRead(BaseModel):
    """An order as its holder or staff see it."""

    reference: str
    msisdn: str
    channel: Channel
    sim_kind: str
    state: OrderState
    fee: Fee
    fee_waived: bool
    assurance: str
    proofs: list[str]
    delivery_address: dict[str, str] | None
    tracking_number: str | None
    new_sim_iccid: str | None = Field(description="Masked: last four digits only.")
    decision_reason: str | None
    created_at: datetime
    expires_at: datetime
    activated_at: datetime | None
    closed_at: datetime | None
    next_steps: list[str]


class OrderEventRead(BaseModel):
    """One step of an order's timeline."""

    transition: str
    from_state: str | None
    to_state: str
    actor: str
    note: str
    at: datetime


class Decision(BaseModel):
    """A reviewer's decision."""

    model_config = ConfigDict(extra="forbid")

    approve: bool
    reason: str = Field(min_length=1, max_length=500)


class PaymentCreate(BaseModel):
    """A payment of the order's fee."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["cash", "online"]
    payment_reference: str | None = Field(default=None, min_length=4, max_length=100)


class Reason(BaseModel):
    """A reason, for waivers and cancellations."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


class SimAssignment(BaseModel):
    """The SIM to give the order; store orders name the scanned ICCID."""

    model_config = ConfigDict(extra="forbid")

    iccid: str | None = Field(default=None, max_length=32)


class Shipment(BaseModel):
    """The carrier's tracking number, when the parcel was booked outside simkeep; else simkeep books it."""

    model_config = ConfigDict(extra="forbid")

    tracking_number: str | None = Field(default=None, min_length=4, max_length=64)


class Activation(BaseModel):
    """The holder's proof of receipt."""

    model_config = ConfigDict(extra="forbid")

    iccid_last_digits: str | None = Field(default=None, min_length=6, max_length=6, pattern=r"^[0-9]{6}$")


class FeeSet(BaseModel):
    """A fee schedule entry."""

    model_config = ConfigDict(extra="forbid")

    amount_minor: int = Field(ge=0, le=1_000_000)
    currency: str = Field(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")


class FeeRead(BaseModel):
    """A fee schedule entry as shown before paying."""

    channel: str
    sim_kind: str
    fee: Fee


class ExpiryRun(BaseModel):
    """Orders expired by a run."""

    expired: list[str]


class IdentityCheckRead(BaseModel):
    """One automatic check's verdict."""

    kind: str
    verdict: str
    score: float | None
    reasons: list[str]
    checked_at: datetime


class EvidenceRead(BaseModel):
    """An evidence file's metadata (its bytes come from /api/v1/evidence/{reference}/content)."""

    reference: str
    kind: str
    content_type: str
    size_bytes: int
    uploaded_at: datetime
    purged: bool


class ReviewRead(BaseModel):
    """What a reviewer sees of an order: the automatic checks and the evidence."""

    order: ReplacementRead
    checks: list[IdentityCheckRead]
    evidence: list[EvidenceRead]
    proofs_failed_recently: int
