"""Bodies of the line API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SimRead(BaseModel):
    """A SIM as a person sees it (ICCID masked)."""

    iccid: str
    kind: str
    status: str


class LineRead(BaseModel):
    """A line's state."""

    msisdn: str
    status: str
    suspension_reason: str | None
    plan: str
    sim: SimRead | None
    sim_change_lock: bool
    activated_at: datetime
    last_activity_at: datetime | None
    open_replacement: str | None
    open_loss_report: str | None


class SimChangeRead(BaseModel):
    """One SIM change of a line."""

    changed_at: datetime
    channel: str
    old_iccid: str | None
    new_iccid: str
    order: str | None


class AuditRead(BaseModel):
    """One audit entry."""

    id: int
    at: datetime
    actor: str
    action: str
    reason: str
    data: dict[str, object]


class Reinstatement(BaseModel):
    """Proof for lifting a loss suspension."""

    model_config = ConfigDict(extra="forbid")

    service_password: str | None = Field(default=None, max_length=64)
    in_person_document_number: str | None = Field(default=None, max_length=32)


class ServicePasswordReset(BaseModel):
    """A clerk sets a new service password after checking the holder in person."""

    model_config = ConfigDict(extra="forbid")

    in_person_document_number: str = Field(min_length=5, max_length=32)
    new_password: str = Field(min_length=6, max_length=64)


class LossReportCreate(BaseModel):
    """A report that a SIM is lost or stolen; anonymous callers give the holder's name or document number."""

    model_config = ConfigDict(extra="forbid")

    msisdn: str = Field(min_length=1, max_length=32, examples=["+8613800138000"])
    reason: str = Field(default="lost", pattern="^(lost|stolen)$")
    real_name: str | None = Field(default=None, max_length=200)
    document_number: str | None = Field(default=None, max_length=32)


class LossReportRead(BaseModel):
    """A loss report."""

    reference: str
    status: str
    reason: str
    reported_at: datetime
    lifted_at: datetime | None
    message: str


class LockChange(BaseModel):
    """Turn the SIM-change lock on (any signed-in session) or off (with a one-time code)."""

    model_config = ConfigDict(extra="forbid")

    on: bool
    one_time_code: str | None = Field(default=None, pattern=r"^[0-9]{6}$")


class ContactsChange(BaseModel):
    """New registered contacts; needs a one-time code sent to a current contact."""

    model_config = ConfigDict(extra="forbid")

    contact_email: str | None = Field(default=None, max_length=254)
    contact_phone: str | None = Field(default=None, max_length=32)
    one_time_code: str = Field(pattern=r"^[0-9]{6}$")


class ContactsRead(BaseModel):
    """The registered contacts, masked."""

    contact_email: str | None
    contact_phone: str | None
