"""Reconciliation: compare what simkeep records with what the HLR holds, and repair the HLR toward simkeep.

simkeep's record says, for each SIM it knows:

- the SIM of an *active* line holds the line's number and is live;
- the SIM of a line *suspended* (loss) holds the number and is barred;
- the SIM of a *recycled* line is absent from the HLR, or barred without a number;
- a *retired* SIM no line uses is absent, or barred without a number;
- any other SIM no line uses (in stock, reserved, shipped) is absent or holds no number.

An IMSI simkeep does not know may sit in the HLR (test SIMs, another system's), but must not hold a number.
IMSIs that a pending network operation is about to change (due now, not one deferred to later such as the
removal of a replaced SIM after its grace) are left out: the operation brings them in line, and repairing
them at the same time would race with it. They are counted in ``in_flight``.
The HLR is read once (:meth:`NetworkAdapter.subscribers`); simkeep's SIMs are read line by line and, for the
HLR's other IMSIs, in chunks, so the whole SIM stock is never held in memory.

Repairs run in the order the HLR's unique MSISDNs need, taking access away before giving any: bar what
should be barred, take numbers off wrong holders, create missing entries (barred at once when their line is
suspended), give numbers, and last unbar what should be live. Each repair writes an audit entry
(``network.reconciled``). The comparison is run again afterwards, and what still differs is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.db.base import utcnow
from simkeep.masking import mask_msisdn
from simkeep.models import Line, LineStatus, NetworkOperation, NetworkOpStatus, Sim, SimStatus
from simkeep.network.adapter import (
    NetworkAdapter,
    NetworkError,
    NetworkSubscriber,
    NetworkUnavailable,
    SimAuth,
)

_CHUNK = 500

# What differs (stable codes, also in the JSON output and the audit entries).
ABSENT = "absent"  # the SIM of an active or suspended line is not in the HLR
NUMBER_MISSING = "number_missing"  # the SIM is there but holds no number
WRONG_NUMBER = "wrong_number"  # the SIM holds another number than its line's
HOLDS_NUMBER = "holds_number"  # a SIM that should hold no number holds one
UNKNOWN_HOLDS_NUMBER = "unknown_imsi_holds_number"  # an IMSI simkeep does not know holds a number
SHOULD_BE_BARRED = "should_be_barred"
SHOULD_BE_LIVE = "should_be_live"
_HELD = {WRONG_NUMBER, HOLDS_NUMBER, UNKNOWN_HOLDS_NUMBER}


@dataclass(frozen=True)
class Expected:
    """What simkeep's record says of one IMSI in the HLR."""

    imsi: str
    sim_id: int | None
    line_id: int | None
    #: The number the IMSI must hold (None: it must hold none).
    msisdn: str | None
    #: True: live (cs+ps); False: barred; None: either.
    live: bool | None
    #: Whether the IMSI may be absent from the HLR.
    may_be_absent: bool
    #: Why, in words: "active line", "suspended line", "recycled line", "retired SIM", "SIM in_stock", ...
    because: str


@dataclass(frozen=True)
class Difference:
    """One way the HLR differs from simkeep's record for one IMSI."""

    kind: str
    imsi: str
    sim_id: int | None
    line_id: int | None
    expected_msisdn: str | None
    actual_msisdn: str | None
    because: str
    #: Whether the IMSI should be live (True), barred (False) or either (None).
    expected_live: bool | None = None
    #: For a number held by the wrong IMSI: the line it belongs to in simkeep.
    owner_line_id: int | None = None
    #: The IMSI's network access mode in the HLR ("cs+ps", "cs", "ps", "none"; "" when absent).
    actual_access: str = ""

    def describe(self) -> str:
        """One line for a person, with masked numbers."""
        exp = mask_msisdn(self.expected_msisdn) if self.expected_msisdn else "no number"
        act = mask_msisdn(self.actual_msisdn) if self.actual_msisdn else "no number"
        where = f"line {self.line_id}" if self.line_id is not None else self.because
        text = {
            ABSENT: f"missing from the HLR; should hold {exp}",
            NUMBER_MISSING: f"holds no number; should hold {exp}",
            WRONG_NUMBER: f"holds {act}; should hold {exp}",
            HOLDS_NUMBER: f"holds {act}; should hold none",
            UNKNOWN_HOLDS_NUMBER: f"unknown to simkeep but holds {act}",
            SHOULD_BE_BARRED: f"has access {self.actual_access}; should be barred (none)",
            SHOULD_BE_LIVE: f"has access {self.actual_access}; should be live (cs+ps)",
        }[self.kind]
        owner = f" (the number of line {self.owner_line_id})" if self.owner_line_id is not None else ""
        return f"IMSI {self.imsi} [{where}]: {text}{owner}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, numbers masked."""
        return {
            "kind": self.kind,
            "imsi": self.imsi,
            "sim_id": self.sim_id,
            "line_id": self.line_id,
            "because": self.because,
            "expected_msisdn": mask_msisdn(self.expected_msisdn) if self.expected_msisdn else None,
            "actual_msisdn": mask_msisdn(self.actual_msisdn) if self.actual_msisdn else None,
            "owner_line_id": self.owner_line_id,
            "actual_access": self.actual_access or None,
        }


@dataclass(frozen=True)
class Repair:
    """One step taken (or tried) in the HLR."""

    step: str  # unbind, provision, bind, bar, unbar
    imsi: str
    kind: str
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"step": self.step, "imsi": self.imsi, "kind": self.kind, "error": self.error}


@dataclass
class ReconcileReport:
    """What differed, what was repaired and what still differs."""

    checked_sims: int = 0
    hlr_entries: int = 0
    #: IMSIs left out because a pending network operation is changing them.
    in_flight: int = 0
    differences: list[Difference] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    #: After repairs: what still differs (equal to ``differences`` when nothing was repaired).
    remaining: list[Difference] = field(default_factory=list)

    @property
    def failed(self) -> list[Repair]:
        """The repairs the HLR refused."""
        return [r for r in self.repairs if r.error is not None]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "checked_sims": self.checked_sims,
            "hlr_entries": self.hlr_entries,
            "in_flight": self.in_flight,
            "differences": [d.as_dict() for d in self.differences],
            "repairs": [r.as_dict() for r in self.repairs],
            "remaining": [d.as_dict() for d in self.remaining],
        }


# --- simkeep's view ---------------------------------------------------------------------------------------


def _expected_for_line(line_id: int, msisdn: str, status: str, sim_id: int, imsi: str) -> Expected:
    if status == LineStatus.ACTIVE:
        return Expected(imsi, sim_id, line_id, msisdn, True, False, "active line")
    if status == LineStatus.SUSPENDED:
        return Expected(imsi, sim_id, line_id, msisdn, False, False, "suspended line")
    return Expected(imsi, sim_id, line_id, None, False, True, "recycled line")


def _expected_for_unused(sim_id: int, imsi: str, status: str) -> Expected:
    if status == SimStatus.RETIRED:
        return Expected(imsi, sim_id, None, None, False, True, "retired SIM")
    return Expected(imsi, sim_id, None, None, None, True, f"SIM {SimStatus(status).value}")


def _lines_with_sims(session: Session) -> Iterator[Expected]:
    """simkeep's view of every SIM that serves (or served, for recycled lines) a line, streamed."""
    query = (
        select(Line.id, Line.msisdn, Line.status, Sim.id, Sim.imsi)
        .join(Sim, Sim.id == Line.sim_id)
        .order_by(Line.id)
        .execution_options(yield_per=2000)
    )
    for line_id, msisdn, status, sim_id, imsi in session.execute(query):
        yield _expected_for_line(line_id, msisdn, status, sim_id, imsi)


def _with_owners(session: Session, differences: list[Difference]) -> list[Difference]:
    """The differences, each number held by a wrong IMSI annotated with the line it belongs to."""
    numbers = sorted({d.actual_msisdn for d in differences if d.actual_msisdn and d.kind in _HELD})
    owners: dict[str, int] = {}
    for chunk in _chunks(numbers, _CHUNK):
        query = select(Line.msisdn, Line.id).where(Line.msisdn.in_(chunk), Line.status != LineStatus.RECYCLED)
        owners.update((msisdn, line_id) for msisdn, line_id in session.execute(query))
    return [
        replace(d, owner_line_id=owners.get(d.actual_msisdn))
        if d.kind in _HELD and d.actual_msisdn in owners
        else d
        for d in differences
    ]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- the comparison ---------------------------------------------------------------------------------------


def _compare_one(exp: Expected, entry: NetworkSubscriber | None) -> Iterator[Difference]:
    def diff(kind: str) -> Difference:
        actual, access = (entry.msisdn, _access(entry)) if entry else (None, "")
        return Difference(
            kind, exp.imsi, exp.sim_id, exp.line_id, exp.msisdn, actual, exp.because, exp.live, None, access
        )

    if entry is None:
        if not exp.may_be_absent:
            yield diff(ABSENT)
        return
    if exp.msisdn is not None and entry.msisdn is None:
        yield diff(NUMBER_MISSING)
    elif entry.msisdn is not None and entry.msisdn != exp.msisdn:
        yield diff(HOLDS_NUMBER if exp.msisdn is None else WRONG_NUMBER)
    if exp.live is True and not entry.live:
        yield diff(SHOULD_BE_LIVE)
    elif exp.live is False and not entry.barred:
        yield diff(SHOULD_BE_BARRED)


def _access(entry: NetworkSubscriber) -> str:
    return entry.access_mode or ("none" if entry.barred else "cs+ps")


def _in_flight(session: Session) -> set[str]:
    """IMSIs that pending network operations due now will change."""
    now = utcnow()
    query = select(NetworkOperation.old_imsi, NetworkOperation.new_imsi).where(
        NetworkOperation.status == NetworkOpStatus.PENDING,
        (NetworkOperation.not_before.is_(None)) | (NetworkOperation.not_before <= now),
    )
    return {imsi for row in session.execute(query) for imsi in row if imsi}


def compare(session: Session, network: NetworkAdapter) -> ReconcileReport:
    """The differences between simkeep's record and the HLR (nothing is changed)."""
    report = ReconcileReport()
    busy = _in_flight(session)
    hlr = {entry.imsi: entry for entry in network.subscribers()}
    report.hlr_entries = len(hlr)
    differences: list[Difference] = []
    seen: set[str] = set(busy)
    for exp in _lines_with_sims(session):
        if exp.imsi in busy:
            continue
        report.checked_sims += 1
        entry = hlr.get(exp.imsi)
        if entry is not None:
            seen.add(exp.imsi)
        differences.extend(_compare_one(exp, entry))
    report.in_flight = len(busy)
    others = sorted(imsi for imsi in hlr if imsi not in seen)
    for chunk in _chunks(others, _CHUNK):
        query = select(Sim.imsi, Sim.id, Sim.status).where(Sim.imsi.in_(chunk))
        sims = {imsi: (sim_id, status) for imsi, sim_id, status in session.execute(query)}
        for imsi in chunk:
            entry = hlr[imsi]
            if imsi not in sims:
                if entry.msisdn is not None:
                    unknown = Difference(
                        UNKNOWN_HOLDS_NUMBER, imsi, None, None, None, entry.msisdn, "unknown IMSI"
                    )
                    differences.append(replace(unknown, actual_access=_access(entry)))
                continue
            sim_id, status = sims[imsi]
            report.checked_sims += 1
            differences.extend(_compare_one(_expected_for_unused(sim_id, imsi, status), entry))
    report.differences = _with_owners(session, differences)
    report.remaining = list(report.differences)
    return report


# --- the repair -------------------------------------------------------------------------------------------


def _plan(differences: Iterable[Difference]) -> list[tuple[str, Difference]]:
    """The repair steps, in the order the HLR needs and that never grants access early.

    Numbers come off wrong holders before any number is given (MSISDNs are unique); access is taken away
    first (bars) and given last (unbars); an entry created for a suspended line is barred before it gets
    its number.
    """
    bars, unbinds, creates, binds, unbars = [], [], [], [], []
    for d in differences:
        if d.kind == SHOULD_BE_BARRED:
            bars.append(("bar", d))
        if d.kind in _HELD:
            unbinds.append(("unbind", d))
        if d.kind == ABSENT:
            creates.append(("provision", d))
            creates.append(("unbar" if d.expected_live else "bar", d))
        if d.kind in {ABSENT, NUMBER_MISSING, WRONG_NUMBER} and d.expected_msisdn is not None:
            binds.append(("bind", d))
        if d.kind == SHOULD_BE_LIVE:
            unbars.append(("unbar", d))
    return bars + unbinds + creates + binds + unbars


def _apply(
    network: NetworkAdapter, step: str, d: Difference, auth_for: Callable[[str], SimAuth | None] | None
) -> None:
    if step == "unbind":
        network.unbind_number(d.imsi)
    elif step == "provision":
        network.provision(d.imsi, auth_for(d.imsi) if auth_for is not None else None)
    elif step == "bind":
        assert d.expected_msisdn is not None
        network.bind_number(d.imsi, d.expected_msisdn)
    else:
        network.set_barred(d.imsi, barred=step == "bar")


def reconcile(
    session: Session,
    network: NetworkAdapter,
    *,
    fix: bool = False,
    actor: str = "system:network-reconcile",
    after_repair: Callable[[], None] | None = None,
    auth_for: Callable[[str], SimAuth | None] | None = None,
) -> ReconcileReport:
    """Compare simkeep with the HLR and, with ``fix``, repair the HLR toward simkeep's record.

    Each repair is audited in ``session``; ``after_repair`` (for instance ``session.commit`` with a
    non-transactional HLR) runs after each one, so the audit trail keeps up with the HLR. A step the HLR
    refuses is reported and the others still run; an unreachable HLR stops the run
    (:class:`NetworkUnavailable`). ``auth_for`` gives the authentication data of an IMSI that must be created
    again (simkeep's sealed SIM secrets); without it, the entry is created without. The caller commits.
    """
    report = compare(session, network)
    if not fix or not report.differences:
        return report
    for step, d in _plan(report.differences):
        try:
            _apply(network, step, d, auth_for)
        except NetworkUnavailable:
            raise
        except NetworkError as exc:
            report.repairs.append(Repair(step, d.imsi, d.kind, exc.message))
            continue
        report.repairs.append(Repair(step, d.imsi, d.kind))
        record(
            session,
            actor=actor,
            action="network.reconciled",
            subject_type="sim" if d.sim_id is not None else "imsi",
            subject_id=d.sim_id if d.sim_id is not None else d.imsi,
            reason=d.kind,
            data={
                "step": step,
                "imsi": d.imsi,
                "line_id": d.line_id,
                "msisdn": mask_msisdn(d.expected_msisdn) if d.expected_msisdn else None,
                "found": mask_msisdn(d.actual_msisdn) if d.actual_msisdn else None,
                "because": d.because,
            },
        )
        if after_repair is not None:
            after_repair()
    session.flush()
    report.remaining = compare(session, network).differences
    return report
