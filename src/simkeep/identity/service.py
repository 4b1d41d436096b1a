"""Checking proofs of identity: a pluggable step every risky action goes through.

A :class:`ProofChecker` checks one kind of evidence. Every attempt is recorded, passed or failed; a failed
one is audited and counts toward the self-service lock. The service password is the first real method;
identity documents, face match and one-time codes plug in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.identity.assurance import REQUIRED, Assurance, Method, combine
from simkeep.identity.errors import AssuranceTooLow, PasswordLocked, ProofFailed, SelfServiceLocked
from simkeep.models import Line, ProofAttempt, StaffRole, Subscriber
from simkeep.security import constant_time_equal, keyed_hash, verify_password


@dataclass(frozen=True)
class Evidence:
    """What the caller presented. Fields left None are not checked."""

    service_password: str | None = None
    real_name: str | None = None
    document_number: str | None = None
    in_person_document_number: str | None = None
    one_time_code: str | None = None


@dataclass(frozen=True)
class ProofContext:
    """The line and holder a proof is about, and who presents it for which action."""

    session: Session
    settings: Settings
    line: Line | None
    subscriber: Subscriber | None
    actor: Actor
    action: str


@dataclass(frozen=True)
class Assessment:
    """The proofs that passed and the assurance they give together."""

    assurance: Assurance
    methods: tuple[str, ...] = field(default_factory=tuple)


class ProofChecker(Protocol):
    """Checks one kind of evidence."""

    method: Method

    def applies(self, evidence: Evidence) -> bool:
        """Whether ``evidence`` carries something for this checker."""

    def check(self, ctx: ProofContext, evidence: Evidence) -> tuple[bool, str]:
        """Whether the evidence checks out, and a detail for the record (never the evidence itself)."""


def document_hash(settings: Settings, number: str) -> str:
    """The keyed hash under which a document number is stored and compared."""
    normalised = "".join(number.split()).upper()
    return keyed_hash(settings.secret_key, normalised, purpose="document-number")


def _name_key(name: str) -> str:
    return "".join(name.split()).casefold()


class ServicePasswordCheck:
    """The line's service password (服务密码), checked against its argon2 hash in constant time."""

    method = Method.SERVICE_PASSWORD

    def applies(self, evidence: Evidence) -> bool:
        """A password was given."""
        return evidence.service_password is not None

    def check(self, ctx: ProofContext, evidence: Evidence) -> tuple[bool, str]:
        """Passes when the password matches; an unknown holder costs the same time and database work.

        A locked password fails like a wrong one for anyone not signed in to the line (so the lock does not
        tell a live number from an unknown one; the holder hears of the lock on their registered contacts);
        a holder signed in to the line is told it is locked.
        """
        assert evidence.service_password is not None
        line_id = ctx.line.id if ctx.line is not None else UNKNOWN_LINE
        locked = (
            password_failures(ctx.session, ctx.settings, line_id)
            >= ctx.settings.password_failures_before_lock
        )
        stored = ctx.subscriber.service_password_hash if ctx.subscriber else None
        ok = verify_password(None if locked else stored, evidence.service_password)
        if locked and ctx.line is not None and ctx.actor.kind == "line" and ctx.actor.line_id == ctx.line.id:
            raise PasswordLocked(
                "Too many wrong service passwords for this number. Password use is locked for "
                f"{ctx.settings.password_lock_window_minutes} minutes; visit a store to be served at once."
            )
        if ok:
            return True, ""
        if locked:
            return False, "password locked"
        return False, "no service password set" if ctx.subscriber and stored is None else "wrong password"


class BiographicalCheck:
    """The holder's name or document number: enough to suspend a line, never to replace its SIM."""

    method = Method.BIOGRAPHICAL

    def applies(self, evidence: Evidence) -> bool:
        """A name or a document number was given."""
        return evidence.real_name is not None or evidence.document_number is not None

    def check(self, ctx: ProofContext, evidence: Evidence) -> tuple[bool, str]:
        """Passes when every given item matches the holder's record."""
        sub = ctx.subscriber
        ok = sub is not None
        if evidence.real_name is not None:
            expected = _name_key(sub.real_name) if sub else "\0"
            ok = constant_time_equal(_name_key(evidence.real_name), expected) and ok
        if evidence.document_number is not None:
            expected = sub.document_number_hmac if sub else "0" * 64
            ok = constant_time_equal(document_hash(ctx.settings, evidence.document_number), expected) and ok
        return ok, "" if ok else "details do not match"


class InPersonDocumentCheck:
    """A clerk saw the original document and the face, and typed the document number."""

    method = Method.IN_PERSON_DOCUMENT

    def applies(self, evidence: Evidence) -> bool:
        """A clerk recorded an in-person check."""
        return evidence.in_person_document_number is not None

    def check(self, ctx: ProofContext, evidence: Evidence) -> tuple[bool, str]:
        """Passes for a clerk (or admin) when the typed number is the holder's."""
        assert evidence.in_person_document_number is not None
        if not ctx.actor.has_role(StaffRole.CLERK):
            return False, "only a clerk at a counter can record an in-person check"
        expected = ctx.subscriber.document_number_hmac if ctx.subscriber else "0" * 64
        typed = document_hash(ctx.settings, evidence.in_person_document_number)
        if constant_time_equal(typed, expected):
            return True, ""
        return False, "the document number is not the holder's"


class OneTimeCodeCheck:
    """A one-time code sent to a registered contact for this very action."""

    method = Method.ONE_TIME_CODE

    def applies(self, evidence: Evidence) -> bool:
        """A code was given."""
        return evidence.one_time_code is not None

    def check(self, ctx: ProofContext, evidence: Evidence) -> tuple[bool, str]:
        """Passes when the code is the live code sent for this line and action."""
        assert evidence.one_time_code is not None
        if ctx.line is None:
            return False, "wrong or expired code"
        from simkeep.identity.otp import check_code

        ok = check_code(
            ctx.session, ctx.settings, line=ctx.line, purpose=ctx.action, code=evidence.one_time_code
        )
        return ok, "" if ok else "wrong or expired code"


CHECKERS: list[ProofChecker] = [
    ServicePasswordCheck(),
    BiographicalCheck(),
    InPersonDocumentCheck(),
    OneTimeCodeCheck(),
]


def register_checker(checker: ProofChecker) -> None:
    """Add a proof method (later issues add documents, face match and one-time codes)."""
    CHECKERS.append(checker)


#: The line id the counts use for a number simkeep does not know (no row has it), so that unknown numbers
#: run the same queries as known ones.
UNKNOWN_LINE = -1


def recent_failures(session: Session, settings: Settings, line_id: int) -> int:
    """Failed proofs for a line within the lock window (wrong service passwords have a lock of their own)."""
    since = utcnow() - timedelta(minutes=settings.failed_proof_window_minutes)
    count = session.scalar(
        select(func.count())
        .select_from(ProofAttempt)
        .where(
            ProofAttempt.line_id == line_id,
            ProofAttempt.passed.is_(False),
            ProofAttempt.method != str(Method.SERVICE_PASSWORD),
            ProofAttempt.attempted_at >= since,
        )
    )
    return int(count or 0)


def password_failures(session: Session, settings: Settings, line_id: int) -> int:
    """Wrong service passwords for a line within the password-lock window, since the password last worked
    or was set."""
    since = utcnow() - timedelta(minutes=settings.password_lock_window_minutes)
    last_good = session.scalar(
        select(func.max(ProofAttempt.attempted_at)).where(
            ProofAttempt.line_id == line_id,
            ProofAttempt.method == str(Method.SERVICE_PASSWORD),
            ProofAttempt.passed.is_(True),
        )
    )
    if last_good is not None and last_good > since:
        since = last_good
    count = session.scalar(
        select(func.count())
        .select_from(ProofAttempt)
        .where(
            ProofAttempt.line_id == line_id,
            ProofAttempt.method == str(Method.SERVICE_PASSWORD),
            ProofAttempt.passed.is_(False),
            ProofAttempt.attempted_at > since,
        )
    )
    return int(count or 0)


#: Actions that make a line safer stay open while its self-service is locked.
UNLOCKED_ACTIONS = frozenset({"loss.report", "lock.on"})


def ensure_not_locked(ctx: ProofContext) -> None:
    """Refuse self-service on a line with too many recent failed proofs (staff at a counter may go on)."""
    if ctx.actor.is_staff:
        return
    # An unknown number runs the same count (on no line), so it costs what a known one costs.
    failures = recent_failures(ctx.session, ctx.settings, ctx.line.id if ctx.line else UNKNOWN_LINE)
    if ctx.line is not None and failures >= ctx.settings.failed_proofs_before_lock:
        raise SelfServiceLocked(
            "Too many failed attempts for this number. Self-service is locked for a while; "
            "visit a store with your identity document, or try again later."
        )


def assess(ctx: ProofContext, evidence: Evidence, *, order_id: int | None = None) -> Assessment:
    """Check every piece of evidence, record each attempt, and combine what passed with the session's proofs.

    Raises :class:`ProofFailed` (keeping the records) when any piece fails.
    """
    if ctx.action not in UNLOCKED_ACTIONS:
        ensure_not_locked(ctx)
    passed: list[str] = []
    failures: list[str] = []
    for checker in CHECKERS:
        if not checker.applies(evidence):
            continue
        ok, detail = checker.check(ctx, evidence)
        ctx.session.add(
            ProofAttempt(
                line_id=ctx.line.id if ctx.line else None,
                order_id=order_id,
                method=str(checker.method),
                action=ctx.action,
                passed=ok,
                actor=ctx.actor.label,
                detail=detail,
            )
        )
        (passed if ok else failures).append(str(checker.method))
    if failures:
        ctx.session.flush()
        alert_on_lock(ctx, failures)
        record(
            ctx.session,
            actor=ctx.actor.label,
            action="proof.failed",
            subject_type="line",
            subject_id=ctx.line.id if ctx.line else "unknown",
            data={"methods": failures, "for": ctx.action},
        )
        raise ProofFailed("The details given do not match our records.", methods=failures)
    methods = tuple(dict.fromkeys([*ctx.actor.proof_methods, *passed]))
    return Assessment(combine(methods), methods)


def alert_on_lock(ctx: ProofContext, failures: list[str]) -> None:
    """Tell the holder, once, when failures have just locked the password or the self-service.

    For an unknown number the same counts run (on no line), so the answer costs the same work.
    """
    from simkeep.notifications.service import notify

    settings, line, subscriber = ctx.settings, ctx.line, ctx.subscriber
    line_id = line.id if line is not None else UNKNOWN_LINE
    if str(Method.SERVICE_PASSWORD) in failures and (
        password_failures(ctx.session, settings, line_id) == settings.password_failures_before_lock
    ):
        template: str | None = "password_locked"
    elif recent_failures(ctx.session, settings, line_id) == settings.failed_proofs_before_lock:
        template = "failed_proofs"
    else:
        template = None
    if template is not None and line is not None and subscriber is not None:
        notify(ctx.session, settings, subscriber=subscriber, line=line, template=template)


def required_for(settings: Settings, action: str) -> Assurance:
    """The assurance ``action`` needs: the operator's policy table, else the default."""
    override = settings.assurance_policy.get(action)
    return Assurance.from_label(override) if override else REQUIRED[action]


def require(assessment: Assessment, action: str, settings: Settings) -> None:
    """Refuse ``action`` when the assurance is below what the policy table asks for it."""
    needed = required_for(settings, action)
    if assessment.assurance < needed:
        raise AssuranceTooLow(
            f"This needs stronger proof of identity ({needed.label}); what was given counts as "
            f"{assessment.assurance.label}.",
            needed=needed.label,
            given=assessment.assurance.label,
        )
