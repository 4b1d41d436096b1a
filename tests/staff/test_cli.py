"""``simkeep staff``: stores and staff accounts from the command line, against a real database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from simkeep.auth import service as auth_service
from simkeep.cli import app
from simkeep.config import Settings, get_settings
from simkeep.db.engine import make_session_factory
from simkeep.errors import AuthenticationFailed
from simkeep.models import AuditEntry, AuthToken, StaffUser, Store
from simkeep.security import verify_password
from tests.helpers import snapshot

PASSWORD = "correct-horse-1"
NEW_PASSWORD = "battery-staple-2"


@dataclass
class Cli:
    """The ``simkeep`` command wired to a private, migrated database."""

    runner: CliRunner
    settings: Settings
    sessions: Callable[[], Session]

    def run(self, *args: str, stdin: str | None = None) -> Result:
        """Run ``simkeep ARGS`` with ``stdin`` as standard input."""
        return self.runner.invoke(app, list(args), input=stdin)

    def json(self, *args: str, stdin: str | None = None) -> Any:
        """Run a command with --json and parse what it printed."""
        result = self.run(*args, "--json", stdin=stdin)
        return json.loads(result.stdout)

    def state(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row of every table, the audit log included."""
        with self.sessions() as session:
            return snapshot(session, exclude=())

    def audit(self) -> list[AuditEntry]:
        """The audit log, oldest first."""
        with self.sessions() as session:
            return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))

    def user(self, username: str) -> StaffUser | None:
        """A staff user as stored."""
        with self.sessions() as session:
            return session.scalar(select(StaffUser).where(StaffUser.username == username))


@pytest.fixture
def cli(fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """The CLI, configured through the environment to use the test's private database."""
    engine, settings = fresh
    monkeypatch.setenv("SIMKEEP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SIMKEEP_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SIMKEEP_ENVIRONMENT", "test")
    get_settings.cache_clear()
    try:
        yield Cli(CliRunner(), settings, make_session_factory(engine))
    finally:
        get_settings.cache_clear()


def _add_store(cli: Cli, code: str = "BJ-XIDAN") -> None:
    result = cli.run("staff", "stores", "add", code, "--name", "北京西单营业厅", "--region", "Beijing")
    assert result.exit_code == 0, result.output


def _create(cli: Cli, username: str, role: str, *extra: str, password: str = PASSWORD) -> Result:
    return cli.run(
        "staff",
        "users",
        "create",
        username,
        "--role",
        role,
        *extra,
        "--password-stdin",
        stdin=password + "\n",
    )


class TestStoresAdd:
    """``staff stores add`` adds a store, audited, and refuses bad or duplicate codes."""

    def test_adds_an_audited_store(self, cli: Cli) -> None:
        """The store is stored with its code upper-cased, and the change is audited as the CLI."""
        result = cli.run(
            "staff",
            "stores",
            "add",
            "bj-xidan",
            "--name",
            "北京西单营业厅",
            "--region",
            "Beijing",
            "--address",
            "西城区西单北大街120号",
        )
        assert result.exit_code == 0, result.output
        assert "BJ-XIDAN" in result.stdout
        with cli.sessions() as session:
            store = session.scalars(select(Store)).one()
        assert (store.code, store.name, store.region, store.address) == (
            "BJ-XIDAN",
            "北京西单营业厅",
            "Beijing",
            "西城区西单北大街120号",
        )
        entry = cli.audit()[-1]
        assert (entry.actor, entry.action, entry.data["code"]) == ("cli", "store.created", "BJ-XIDAN")

    def test_json_output(self, cli: Cli) -> None:
        """With --json the new store is printed as JSON."""
        out = cli.json(
            "staff", "stores", "add", "SH-NANJINGRD", "--name", "上海南京路营业厅", "--region", "Shanghai"
        )
        assert (out["code"], out["name"], out["region"]) == ("SH-NANJINGRD", "上海南京路营业厅", "Shanghai")

    def test_duplicate_code_is_refused(self, cli: Cli) -> None:
        """A second store with the same code (in any case) fails with STORE_EXISTS and changes nothing."""
        _add_store(cli)
        before = cli.state()
        result = cli.run("staff", "stores", "add", "bj-xidan", "--name", "Other", "--region", "Beijing")
        assert result.exit_code == 1
        assert "STORE_EXISTS" in result.stderr
        assert cli.state() == before

    def test_duplicate_code_as_json(self, cli: Cli) -> None:
        """With --json the refusal is a JSON error on standard output."""
        _add_store(cli)
        result = cli.run("staff", "stores", "add", "BJ-XIDAN", "--name", "x", "--region", "y", "--json")
        assert result.exit_code == 1
        assert json.loads(result.stdout)["error"] == "STORE_EXISTS"

    @pytest.mark.parametrize(
        ("code", "name", "error"),
        [
            ("X", "A store", "STORE_CODE_INVALID"),
            ("BJ XIDAN!", "A store", "STORE_CODE_INVALID"),
            ("BJ-XIDAN", "   ", "FIELD_REQUIRED"),
        ],
    )
    def test_bad_input_is_refused(self, cli: Cli, code: str, name: str, error: str) -> None:
        """A malformed code or an empty name is refused with its error code; nothing is stored."""
        before = cli.state()
        result = cli.run("staff", "stores", "add", code, "--name", name, "--region", "Beijing")
        assert result.exit_code == 1
        assert error in result.stderr
        assert cli.state() == before


class TestStoresList:
    """``staff stores list`` shows every store."""

    def test_lists_stores_by_code(self, cli: Cli) -> None:
        """The stores come back by code."""
        _add_store(cli, "SH-NANJINGRD")
        _add_store(cli, "BJ-XIDAN")
        assert [s["code"] for s in cli.json("staff", "stores", "list")] == ["BJ-XIDAN", "SH-NANJINGRD"]

    def test_says_when_there_are_none(self, cli: Cli) -> None:
        """An empty list is said in words."""
        result = cli.run("staff", "stores", "list")
        assert (result.exit_code, result.stdout.strip()) == (0, "no stores")


class TestUsersCreate:
    """``staff users create`` makes a staff user with an argon2 hash of a password never given as argument."""

    def test_creates_a_clerk_of_a_store(self, cli: Cli) -> None:
        """A clerk is stored with role, store, display name and an argon2 hash of the stdin password."""
        _add_store(cli)
        result = _create(cli, "clerk.bj", "clerk", "--store", "bj-xidan", "--name", "王芳")
        assert result.exit_code == 0, result.output
        user = cli.user("clerk.bj")
        assert user is not None
        with cli.sessions() as session:
            store = session.scalars(select(Store)).one()
        assert (user.role, user.store_id, user.display_name, user.active) == ("clerk", store.id, "王芳", True)
        assert user.password_hash.startswith("$argon2id$")
        assert verify_password(user.password_hash, PASSWORD)
        entry = cli.audit()[-1]
        assert (entry.actor, entry.action) == ("cli", "staff.created")
        assert entry.data == {"username": "clerk.bj", "role": "clerk", "store": "BJ-XIDAN"}
        assert PASSWORD not in result.output

    def test_reviewer_needs_no_store(self, cli: Cli) -> None:
        """A reviewer is created without a store; the JSON names no store and defaults the display name."""
        out = json.loads(_create(cli, "reviewer", "reviewer", "--json").stdout)
        assert (out["username"], out["role"], out["store"], out["display_name"]) == (
            "reviewer",
            "reviewer",
            None,
            "reviewer",
        )

    def test_password_is_prompted_twice_when_not_on_stdin(self, cli: Cli) -> None:
        """Without --password-stdin the password is asked for twice, hidden, and not echoed."""
        result = cli.run(
            "staff", "users", "create", "admin", "--role", "admin", stdin=f"{PASSWORD}\n{PASSWORD}\n"
        )
        assert result.exit_code == 0, result.output
        user = cli.user("admin")
        assert user is not None
        assert verify_password(user.password_hash, PASSWORD)
        assert PASSWORD not in result.output

    def test_mismatched_prompts_create_nothing(self, cli: Cli) -> None:
        """Two different passwords at the prompt are not accepted; when input ends nothing is created."""
        before = cli.state()
        result = cli.run(
            "staff", "users", "create", "admin", "--role", "admin", stdin=f"{PASSWORD}\n{NEW_PASSWORD}\n"
        )
        assert result.exit_code != 0
        assert "do not match" in result.output
        assert cli.state() == before

    def test_bad_input_is_refused_before_the_prompt(self, cli: Cli) -> None:
        """An unknown store is refused before any password is asked for."""
        result = cli.run("staff", "users", "create", "clerk.x", "--role", "clerk", "--store", "NOWHERE")
        assert result.exit_code == 1
        assert "STORE_NOT_FOUND" in result.stderr
        assert "Password" not in result.output

    def test_password_is_not_an_argument(self, cli: Cli) -> None:
        """There is no --password option: a password on the command line is a usage error."""
        before = cli.state()
        result = cli.run("staff", "users", "create", "admin", "--role", "admin", "--password", PASSWORD)
        assert result.exit_code == 2
        assert cli.state() == before

    @pytest.mark.parametrize(
        ("username", "role", "extra", "password", "error"),
        [
            ("boss", "owner", (), PASSWORD, "ROLE_INVALID"),
            ("clerk.x", "clerk", ("--store", "NOWHERE"), PASSWORD, "STORE_NOT_FOUND"),
            ("clerk.x", "clerk", (), PASSWORD, "STORE_REQUIRED"),
            ("taken", "reviewer", (), PASSWORD, "USERNAME_TAKEN"),
            ("TAKEN", "admin", (), PASSWORD, "USERNAME_TAKEN"),
            ("shorty", "admin", (), "nine-char", "PASSWORD_TOO_SHORT"),
            ("shorty", "admin", (), "", "PASSWORD_TOO_SHORT"),
            ("bad name!", "admin", (), PASSWORD, "USERNAME_INVALID"),
        ],
    )
    @pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
    def test_bad_input_is_refused(
        self,
        cli: Cli,
        username: str,
        role: str,
        extra: tuple[str, ...],
        password: str,
        error: str,
        as_json: bool,
    ) -> None:
        """Each bad input fails with its error code (on stderr, or as JSON) and changes nothing."""
        _add_store(cli)
        assert _create(cli, "taken", "reviewer").exit_code == 0
        before = cli.state()
        result = _create(cli, username, role, *extra, *(["--json"] if as_json else []), password=password)
        assert result.exit_code == 1
        if as_json:
            assert json.loads(result.stdout)["error"] == error
        else:
            assert f"error [{error}]" in result.stderr
        assert cli.state() == before


class TestUsersList:
    """``staff users list`` shows every staff user with role, store and status."""

    def test_lists_users(self, cli: Cli) -> None:
        """Users come back by name with their store code and whether they are active."""
        _add_store(cli)
        _create(cli, "clerk.bj", "clerk", "--store", "BJ-XIDAN")
        _create(cli, "admin", "admin")
        out = cli.json("staff", "users", "list")
        assert [(u["username"], u["role"], u["store"], u["active"]) for u in out] == [
            ("admin", "admin", None, True),
            ("clerk.bj", "clerk", "BJ-XIDAN", True),
        ]

    def test_text_output_names_the_store(self, cli: Cli) -> None:
        """The text listing shows one user per line."""
        _add_store(cli)
        _create(cli, "clerk.bj", "clerk", "--store", "BJ-XIDAN")
        result = cli.run("staff", "users", "list")
        assert "clerk.bj" in result.stdout
        assert "BJ-XIDAN" in result.stdout


class TestUsersDisable:
    """``staff users disable`` stops a user signing in and ends their sessions."""

    def test_disabled_user_cannot_sign_in(self, cli: Cli) -> None:
        """After disabling, sign-in fails and the user's open token is revoked; the change is audited."""
        _create(cli, "reviewer", "reviewer")
        with cli.sessions() as session:
            auth_service.sign_in_staff(session, cli.settings, username="reviewer", password=PASSWORD)
            session.commit()
        result = cli.run("staff", "users", "disable", "reviewer")
        assert result.exit_code == 0, result.output
        user = cli.user("reviewer")
        assert user is not None
        assert not user.active
        with cli.sessions() as session:
            assert all(t.revoked_at is not None for t in session.scalars(select(AuthToken)))
            with pytest.raises(AuthenticationFailed):
                auth_service.sign_in_staff(session, cli.settings, username="reviewer", password=PASSWORD)
        entry = cli.audit()[-1]
        assert (entry.actor, entry.action, entry.data["tokens_revoked"]) == ("cli", "staff.disabled", 1)

    def test_disabling_twice_changes_nothing(self, cli: Cli) -> None:
        """Disabling a disabled user says so and writes nothing."""
        _create(cli, "reviewer", "reviewer")
        cli.run("staff", "users", "disable", "reviewer")
        before = cli.state()
        out = cli.json("staff", "users", "disable", "reviewer")
        assert out == {"username": "reviewer", "active": False, "changed": False}
        assert cli.state() == before

    def test_unknown_user_is_refused(self, cli: Cli) -> None:
        """An unknown user name fails with STAFF_USER_NOT_FOUND and changes nothing."""
        before = cli.state()
        result = cli.run("staff", "users", "disable", "nobody")
        assert result.exit_code == 1
        assert "STAFF_USER_NOT_FOUND" in result.stderr
        assert cli.state() == before


class TestUsersResetPassword:
    """``staff users reset-password`` sets a new password read from stdin."""

    def test_new_password_replaces_the_old(self, cli: Cli) -> None:
        """The new password works, the old one no longer does, and the change is audited."""
        _create(cli, "admin", "admin")
        result = cli.run(
            "staff", "users", "reset-password", "admin", "--password-stdin", stdin=NEW_PASSWORD + "\n"
        )
        assert result.exit_code == 0, result.output
        user = cli.user("admin")
        assert user is not None
        assert verify_password(user.password_hash, NEW_PASSWORD)
        assert not verify_password(user.password_hash, PASSWORD)
        assert [e.action for e in cli.audit()][-1] == "staff.password_reset"

    def test_short_password_is_refused(self, cli: Cli) -> None:
        """A password under ten characters fails with PASSWORD_TOO_SHORT; the old one stays."""
        _create(cli, "admin", "admin")
        before = cli.state()
        result = cli.run(
            "staff", "users", "reset-password", "admin", "--password-stdin", "--json", stdin="short\n"
        )
        assert result.exit_code == 1
        assert json.loads(result.stdout)["error"] == "PASSWORD_TOO_SHORT"
        assert cli.state() == before

    def test_unknown_user_is_refused(self, cli: Cli) -> None:
        """An unknown user name fails with STAFF_USER_NOT_FOUND and changes nothing."""
        before = cli.state()
        result = cli.run(
            "staff", "users", "reset-password", "nobody", "--password-stdin", stdin=NEW_PASSWORD + "\n"
        )
        assert result.exit_code == 1
        assert "STAFF_USER_NOT_FOUND" in result.stderr
        assert cli.state() == before
