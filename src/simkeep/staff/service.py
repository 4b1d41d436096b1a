"""Stores and staff accounts: adding stores, creating, disabling and re-keying staff users.

Each function checks its input completely before it changes anything, audits what it changed, and leaves
the commit to the caller (the command or request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.db.base import utcnow
from simkeep.errors import Conflict, InvalidInput, NotFound
from simkeep.models import AuthToken, StaffRole, StaffUser, Store
from simkeep.security import hash_password

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
_STORE_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}\Z")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}\Z")


class StoreExists(Conflict):
    """A store with this code already exists."""

    code = "STORE_EXISTS"


class StoreNotFound(NotFound):
    """No store has this code."""

    code = "STORE_NOT_FOUND"


class StoreCodeInvalid(InvalidInput):
    """A store code must be short, upper-case letters, digits and dashes."""

    code = "STORE_CODE_INVALID"


class UsernameTaken(Conflict):
    """A staff user with this name already exists."""

    code = "USERNAME_TAKEN"


class UsernameInvalid(InvalidInput):
    """A user name must be short, lower-case letters, digits, dots, dashes and underscores."""

    code = "USERNAME_INVALID"


class StaffUserNotFound(NotFound):
    """No staff user has this name."""

    code = "STAFF_USER_NOT_FOUND"


class RoleInvalid(InvalidInput):
    """Not one of the staff roles."""

    code = "ROLE_INVALID"


class StoreRequired(InvalidInput):
    """Clerks serve a store's counter, so they belong to one."""

    code = "STORE_REQUIRED"


class PasswordTooShort(InvalidInput):
    """A staff password is at least :data:`MIN_PASSWORD_LENGTH` characters."""

    code = "PASSWORD_TOO_SHORT"


class FieldRequired(InvalidInput):
    """A required text field is empty."""

    code = "FIELD_REQUIRED"


def _required(value: str, field: str, max_length: int) -> str:
    text = value.strip()
    if not text:
        raise FieldRequired(f"The {field} may not be empty.", field=field)
    if len(text) > max_length:
        raise InvalidInput(f"The {field} is at most {max_length} characters.", code="FIELD_TOO_LONG")
    return text


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordTooShort(f"A staff password has at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"A staff password has at most {MAX_PASSWORD_LENGTH} characters.", code="PASSWORD_TOO_LONG"
        )


def parse_role(value: str) -> StaffRole:
    """The staff role named ``value`` (case-insensitive); raises :class:`RoleInvalid`."""
    try:
        return StaffRole(value.strip().lower())
    except ValueError:
        roles = ", ".join(str(r) for r in StaffRole)
        raise RoleInvalid(f"Unknown role {value!r}; the roles are {roles}.") from None


def store_by_code(session: Session, code: str) -> Store | None:
    """The store with this code (codes are compared upper-case)."""
    return session.scalar(select(Store).where(Store.code == code.strip().upper()))


def user_by_name(session: Session, username: str) -> StaffUser | None:
    """The staff user with this name (names are compared lower-case)."""
    return session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))


def add_store(
    session: Session, *, actor: Actor, code: str, name: str, region: str, address: str = ""
) -> Store:
    """Add a store (营业厅); its code is the short name staff type, such as ``BJ-XIDAN``."""
    code = code.strip().upper()
    if not _STORE_CODE.match(code):
        raise StoreCodeInvalid(
            "A store code has 2 to 32 characters: letters, digits, '-' and '_' (e.g. BJ-XIDAN)."
        )
    name = _required(name, "store name", 200)
    region = _required(region, "region", 100)
    address = address.strip()[:500]
    if store_by_code(session, code) is not None:
        raise StoreExists(f"A store with code {code} already exists.")
    store = Store(code=code, name=name, region=region, address=address)
    try:
        with session.begin_nested():  # another writer may have taken the code since the check
            session.add(store)
    except IntegrityError as exc:
        raise StoreExists(f"A store with code {code} already exists.") from exc
    record(
        session,
        actor=actor.label,
        action="store.created",
        subject_type="store",
        subject_id=store.id,
        data={"code": code, "name": name, "region": region},
    )
    return store


def list_stores(session: Session) -> list[Store]:
    """Every store, by code."""
    return list(session.scalars(select(Store).order_by(Store.code)))


@dataclass(frozen=True)
class NewUser:
    """A checked request for a new staff user, before a password is asked for."""

    username: str
    role: StaffRole
    store: Store | None
    display_name: str


def check_new_user(
    session: Session,
    *,
    username: str,
    role: str | StaffRole,
    store_code: str | None = None,
    display_name: str | None = None,
) -> NewUser:
    """Check everything about a new staff user except the password; raises the first problem found."""
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise UsernameInvalid(
            "A user name has 2 to 64 characters: lower-case letters, digits, '.', '-' and '_'."
        )
    staff_role = role if isinstance(role, StaffRole) else parse_role(role)
    store: Store | None = None
    if store_code is not None and store_code.strip():
        store = store_by_code(session, store_code)
        if store is None:
            raise StoreNotFound(f"No store has the code {store_code.strip().upper()}.")
    if staff_role == StaffRole.CLERK and store is None:
        raise StoreRequired("A clerk belongs to a store: give --store CODE.")
    shown_name = _required(display_name, "display name", 200) if display_name is not None else username
    if user_by_name(session, username) is not None:
        raise UsernameTaken(f"A staff user named {username} already exists.")
    return NewUser(username, staff_role, store, shown_name)


def create_user(
    session: Session,
    *,
    actor: Actor,
    username: str,
    role: str | StaffRole,
    password: str,
    store_code: str | None = None,
    display_name: str | None = None,
) -> StaffUser:
    """Create a staff user with an argon2-hashed password; clerks must belong to a store."""
    new = check_new_user(
        session, username=username, role=role, store_code=store_code, display_name=display_name
    )
    _check_password(password)
    username, staff_role, store = new.username, new.role, new.store
    user = StaffUser(
        username=username,
        display_name=new.display_name,
        role=staff_role,
        store_id=store.id if store else None,
        password_hash=hash_password(password),
        active=True,
    )
    try:
        with session.begin_nested():  # another writer may have taken the name since the check
            session.add(user)
    except IntegrityError as exc:
        raise UsernameTaken(f"A staff user named {username} already exists.") from exc
    record(
        session,
        actor=actor.label,
        action="staff.created",
        subject_type="staff",
        subject_id=user.id,
        data={"username": username, "role": str(staff_role), "store": store.code if store else None},
    )
    return user


def list_users(session: Session) -> list[tuple[StaffUser, Store | None]]:
    """Every staff user with their store, by user name."""
    rows = session.execute(
        select(StaffUser, Store).outerjoin(Store, Store.id == StaffUser.store_id).order_by(StaffUser.username)
    )
    return [(user, store) for user, store in rows]


def get_user(session: Session, username: str) -> StaffUser:
    """The staff user with this name; raises :class:`StaffUserNotFound`."""
    user = user_by_name(session, username)
    if user is None:
        raise StaffUserNotFound(f"No staff user is named {username.strip().lower()}.")
    return user


def _revoke_tokens(session: Session, user: StaffUser) -> int:
    """Revoke the user's live bearer tokens; returns how many."""
    result = session.execute(
        update(AuthToken)
        .where(AuthToken.staff_user_id == user.id, AuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult of an UPDATE


def disable_user(session: Session, *, actor: Actor, username: str) -> tuple[StaffUser, bool]:
    """Disable a staff user and end their sessions; returns the user and whether anything changed."""
    user = get_user(session, username)
    if not user.active:
        return user, False
    user.active = False
    revoked = _revoke_tokens(session, user)
    session.flush()
    record(
        session,
        actor=actor.label,
        action="staff.disabled",
        subject_type="staff",
        subject_id=user.id,
        data={"username": user.username, "tokens_revoked": revoked},
    )
    return user, True


def reset_password(session: Session, *, actor: Actor, username: str, password: str) -> StaffUser:
    """Give a staff user a new password and end their sessions."""
    user = get_user(session, username)
    _check_password(password)
    user.password_hash = hash_password(password)
    revoked = _revoke_tokens(session, user)
    session.flush()
    record(
        session,
        actor=actor.label,
        action="staff.password_reset",
        subject_type="staff",
        subject_id=user.id,
        data={"username": user.username, "tokens_revoked": revoked},
    )
    return user
