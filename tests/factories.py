"""Builders of test data, written straight through the ORM (imports and the demo have their own tests)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.identifiers import luhn_valid
from simkeep.identity.service import document_hash
from simkeep.models import (
    DocumentType,
    EmbeddedHlrSubscriber,
    Line,
    LineStatus,
    Plan,
    Sim,
    SimChange,
    SimChangeChannel,
    SimKind,
    SimLocation,
    SimStatus,
    StaffRole,
    StaffUser,
    Store,
    Subscriber,
)
from simkeep.security import hash_password

_serial = itertools.count(1)


@lru_cache(maxsize=8)
def _hash(password: str) -> str:
    """Argon2 is slow on purpose; tests reuse one hash per password."""
    return hash_password(password)


PASSWORD = "s3rvice-pass"
STAFF_PASSWORD = "staff-pass-123"
DOCUMENT = "11010519491231002X"


def make_iccid(serial: int) -> str:
    """A valid 19-digit ICCID (89 86 01 + serial + Luhn digit)."""
    body = f"898601{serial:012d}"
    return next(body + str(d) for d in range(10) if luhn_valid(body + str(d)))


def make_imsi(serial: int) -> str:
    """A 15-digit IMSI of test network 001-01."""
    return f"00101{serial:010d}"


def make_msisdn(serial: int) -> str:
    """A valid Chinese mobile number."""
    return f"+86138{serial:08d}"


def sim(
    db: Session,
    *,
    kind: SimKind = SimKind.PHYSICAL,
    location: SimLocation = SimLocation.WAREHOUSE,
    store: Store | None = None,
    status: SimStatus = SimStatus.IN_STOCK,
) -> Sim:
    """A SIM, in stock unless told otherwise."""
    n = next(_serial)
    row = Sim(
        iccid=make_iccid(n),
        imsi=make_imsi(n),
        kind=kind,
        status=status,
        location=SimLocation.STORE if store else location,
        store_id=store.id if store else None,
        batch="test",
    )
    db.add(row)
    db.flush()
    return row


def store(db: Session, code: str | None = None) -> Store:
    """A store."""
    n = next(_serial)
    row = Store(code=code or f"S{n}", name=f"Store {n}", region="Beijing")
    db.add(row)
    db.flush()
    return row


def staff(
    db: Session, role: StaffRole, *, store_row: Store | None = None, username: str | None = None
) -> StaffUser:
    """A staff user with password STAFF_PASSWORD."""
    n = next(_serial)
    row = StaffUser(
        username=username or f"{role}{n}",
        display_name=f"{role} {n}",
        role=role,
        store_id=store_row.id if store_row else None,
        password_hash=_hash(STAFF_PASSWORD),
    )
    db.add(row)
    db.flush()
    return row


@dataclass
class Holder:
    """A subscriber with one active line and its SIM."""

    subscriber: Subscriber
    line: Line
    sim: Sim

    @property
    def msisdn(self) -> str:
        """The line's number."""
        return self.line.msisdn


def holder(
    db: Session,
    settings: Settings,
    *,
    name: str = "张伟",
    document: str = DOCUMENT,
    password: str | None = PASSWORD,
) -> Holder:
    """A holder with an active line served by a live SIM, known to the embedded HLR."""
    n = next(_serial)
    plan = db.query(Plan).filter_by(code="keep").one_or_none()
    if plan is None:
        plan = Plan(code="keep", name="Number keeper")
        db.add(plan)
        db.flush()
    sub = Subscriber(
        real_name=name,
        document_type=DocumentType.CN_RIC,
        document_number_hmac=document_hash(settings, document),
        document_number_last4=document[-4:],
        contact_email=f"holder{n}@example.org",
        contact_phone=None,
        delivery_address={
            "recipient": name,
            "phone": "+8613900000000",
            "region": "Beijing",
            "city": "Beijing",
            "street": f"{n} Chang'an Avenue",
        },
        service_password_hash=_hash(password) if password else None,
    )
    db.add(sub)
    db.flush()
    live = sim(db, status=SimStatus.ACTIVE)
    now = utcnow()
    line = Line(
        msisdn=make_msisdn(n),
        subscriber_id=sub.id,
        plan_id=plan.id,
        status=LineStatus.ACTIVE,
        sim_id=live.id,
        activated_at=now,
        last_activity_at=now,
    )
    db.add(line)
    db.flush()
    db.add(
        SimChange(
            line_id=line.id,
            old_sim_id=None,
            new_sim_id=live.id,
            changed_at=now,
            channel=SimChangeChannel.INITIAL,
        )
    )
    db.add(EmbeddedHlrSubscriber(imsi=live.imsi, msisdn=line.msisdn, network_access_mode="cs+ps"))
    db.flush()
    return Holder(sub, line, live)


@dataclass
class ReadyStoreOrder:
    """A paid store order whose new SIM is assigned: the counter's next step is activation."""

    clerk: Actor
    clerk_username: str
    reference: str
    holder: Holder
    new_sim: Sim


def clerk_actor(row: StaffUser) -> Actor:
    """The actor of a signed-in clerk."""
    return Actor(
        kind="staff",
        label=f"staff:{row.username}",
        staff_user_id=row.id,
        role=StaffRole.CLERK,
        store_id=row.store_id,
    )


def ready_store_order(db: Session, settings: Settings, *, store_row: Store | None = None) -> ReadyStoreOrder:
    """A holder, a clerk of a store and a store replacement paid in cash with the store's SIM assigned."""
    from simkeep.identity.service import Evidence
    from simkeep.models import Channel, PaymentMethod
    from simkeep.replacements import service

    store_row = store_row or store(db)
    clerk_row = staff(db, StaffRole.CLERK, store_row=store_row)
    clerk = clerk_actor(clerk_row)
    new_sim = sim(db, store=store_row)
    made = holder(db, settings)
    order = service.submit(
        db,
        settings,
        actor=clerk,
        msisdn=made.msisdn,
        channel=Channel.STORE,
        evidence=Evidence(in_person_document_number=DOCUMENT),
    )
    ref = order.reference
    service.pay(db, actor=clerk, reference=ref, method=PaymentMethod.CASH, payment_reference=None)
    service.assign_sim(db, actor=clerk, reference=ref, iccid=new_sim.iccid)
    return ReadyStoreOrder(clerk, clerk_row.username, ref, made, new_sim)
