"""ORM models, one module per table group. Importing this package registers every table."""

from simkeep.models.audit import AuditEntry
from simkeep.models.auth import AuthToken, TokenKind
from simkeep.models.billing import Fee, Payment, PaymentKind, PaymentMethod
from simkeep.models.camara import CamaraChange, CamaraSubscription, CamaraWorker, SubscriptionStatus
from simkeep.models.esim import EsimProfile, EsimProfileState, EsimProgressEvent
from simkeep.models.identity import EvidenceFile, IdentityCheck, Notification, OneTimeCode
from simkeep.models.jobs import Job, JobSchedule, JobState
from simkeep.models.keepalive import (
    ApiQueryBatch,
    KeepAliveReminder,
    NumberRecycling,
    NumberState,
    PoolNumber,
    RelyingParty,
    UsageEvent,
    UsageKind,
)
from simkeep.models.lines import Line, LineStatus, Plan, SuspensionReason
from simkeep.models.loss import LossReport, LossReportStatus
from simkeep.models.network import EmbeddedHlrSubscriber, NetworkOperation, NetworkOpKind, NetworkOpStatus
from simkeep.models.proofs import ProofAttempt
from simkeep.models.replacements import Channel, OrderEvent, OrderState, ReplacementOrder
from simkeep.models.shipping import Parcel, ParcelEvent, ParcelState
from simkeep.models.sims import Sim, SimChange, SimChangeChannel, SimKind, SimLocation, SimStatus
from simkeep.models.staff import StaffRole, StaffUser, Store
from simkeep.models.subscribers import DocumentType, Language, Subscriber

__all__ = [
    "ApiQueryBatch",
    "AuditEntry",
    "AuthToken",
    "CamaraChange",
    "CamaraSubscription",
    "CamaraWorker",
    "Channel",
    "DocumentType",
    "EmbeddedHlrSubscriber",
    "EsimProfile",
    "EsimProfileState",
    "EsimProgressEvent",
    "EvidenceFile",
    "Fee",
    "IdentityCheck",
    "Job",
    "JobSchedule",
    "JobState",
    "KeepAliveReminder",
    "Language",
    "Line",
    "LineStatus",
    "LossReport",
    "LossReportStatus",
    "NetworkOpKind",
    "NetworkOpStatus",
    "NetworkOperation",
    "Notification",
    "NumberRecycling",
    "NumberState",
    "OneTimeCode",
    "OrderEvent",
    "OrderState",
    "Parcel",
    "ParcelEvent",
    "ParcelState",
    "Payment",
    "PaymentKind",
    "PaymentMethod",
    "Plan",
    "PoolNumber",
    "ProofAttempt",
    "RelyingParty",
    "ReplacementOrder",
    "Sim",
    "SimChange",
    "SimChangeChannel",
    "SimKind",
    "SimLocation",
    "SimStatus",
    "StaffRole",
    "StaffUser",
    "Store",
    "Subscriber",
    "SubscriptionStatus",
    "SuspensionReason",
    "TokenKind",
    "UsageEvent",
    "UsageKind",
]
