"""``simkeep clients create | list | disable | rotate-secret`` on a private, committed database."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.camara.clients import secret_hash
from simkeep.models import RelyingParty
from tests.camara.conftest import Cli

pytestmark = pytest.mark.concurrent


def _rows(factory: Callable[[], Session]) -> list[RelyingParty]:
    with factory() as session:
        return list(session.scalars(select(RelyingParty).order_by(RelyingParty.id)))


class TestCreate:
    """``simkeep clients create NAME --scope S ...``."""

    def test_create_prints_the_secret_once_and_stores_its_hmac(
        self, cli: Cli, fresh_session_factory: Callable[[], Session]
    ) -> None:
        """The secret is printed, only its HMAC is stored; scopes and limits are kept."""
        out = cli.json(
            "create",
            "Bank of Test",
            "--scope",
            "number-recycling:check",
            "--scope",
            "sim-swap:check",
            "--rps",
            "7",
            "--daily-quota",
            "1000",
        )
        [row] = _rows(fresh_session_factory)
        assert row.client_id == out["client_id"]
        assert row.secret_hash == secret_hash(cli.settings, out["client_secret"])
        assert out["client_secret"] not in row.secret_hash
        assert (row.name, row.scopes, row.requests_per_second, row.daily_quota, row.active) == (
            "Bank of Test",
            "number-recycling:check sim-swap:check",
            7,
            1000,
            True,
        )

    def test_text_output_names_id_and_secret(self, cli: Cli) -> None:
        """For a person: the client id and the secret, with a warning that it is shown once."""
        result = cli.run("create", "Bank", "--scope", "sim-swap")
        assert result.exit_code == 0, result.output
        assert "client_id" in result.stdout and "client_secret" in result.stdout and "once" in result.stdout

    @pytest.mark.parametrize(
        "args",
        [
            ("Bank", "--scope", "admin"),
            ("Bank",),
            ("   ", "--scope", "sim-swap"),
            ("Bank", "--scope", "sim-swap", "--rps", "0"),
            ("Bank", "--scope", "sim-swap", "--daily-quota", "-1"),
            ("Bank", "--scope", "sim-swap", "--rps", "many"),
        ],
    )
    def test_bad_input_exits_non_zero_and_creates_nothing(
        self, cli: Cli, fresh_session_factory: Callable[[], Session], args: tuple[str, ...]
    ) -> None:
        """An unknown scope, no scope, an empty name or a bad limit: an error, and no client."""
        result = cli.run("create", *args)
        assert result.exit_code != 0
        assert _rows(fresh_session_factory) == []


class TestListDisableRotate:
    """``list``, ``disable`` and ``rotate-secret``."""

    def test_list_shows_clients_without_secrets(self, cli: Cli) -> None:
        """Every client is listed with scopes and limits, never a secret or its hash."""
        first = cli.json("create", "A", "--scope", "sim-swap")
        cli.json("create", "B", "--scope", "number-recycling:check")
        listed = cli.json("list")["clients"]
        assert [c["name"] for c in listed] == ["A", "B"]
        assert listed[0]["client_id"] == first["client_id"]
        assert first["client_secret"] not in json.dumps(listed)
        assert all("secret_hash" not in c and "client_secret" not in c for c in listed)

    def test_disable_marks_the_client_inactive(
        self, cli: Cli, fresh_session_factory: Callable[[], Session]
    ) -> None:
        """``disable`` sets the client inactive."""
        created = cli.json("create", "A", "--scope", "sim-swap")
        assert cli.json("disable", created["client_id"])["active"] is False
        assert _rows(fresh_session_factory)[0].active is False

    def test_rotate_replaces_the_secret(self, cli: Cli, fresh_session_factory: Callable[[], Session]) -> None:
        """``rotate-secret`` prints a new secret; only the new one matches the stored HMAC."""
        created = cli.json("create", "A", "--scope", "sim-swap")
        rotated = cli.json("rotate-secret", created["client_id"])
        assert rotated["client_secret"] != created["client_secret"]
        [row] = _rows(fresh_session_factory)
        assert row.secret_hash == secret_hash(cli.settings, rotated["client_secret"])

    @pytest.mark.parametrize("command", ["disable", "rotate-secret"])
    def test_unknown_client_exits_non_zero_and_changes_nothing(
        self, cli: Cli, fresh_session_factory: Callable[[], Session], command: str
    ) -> None:
        """An unknown client id is an error (CLIENT_NOT_FOUND) and no client changes."""
        created = cli.json("create", "A", "--scope", "sim-swap")
        before = [(r.active, r.secret_hash) for r in _rows(fresh_session_factory)]
        result = cli.run(command, "rp_nobody", "--json")
        assert result.exit_code == 1
        assert json.loads(result.stdout)["error"] == "CLIENT_NOT_FOUND"
        assert [(r.active, r.secret_hash) for r in _rows(fresh_session_factory)] == before
        assert created["client_id"]
