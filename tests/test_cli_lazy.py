"""Tests of the ``simkeep`` command tree: sub-commands imported only when they run."""

from __future__ import annotations

import importlib
import subprocess
import sys

import typer
from typer.testing import CliRunner

from simkeep.cli import LAZY_COMMANDS, app


class TestLazySubcommands:
    """The sub-commands of ``simkeep.cli.LAZY_COMMANDS``."""

    def test_help_lists_every_subcommand_with_its_modules_help(self) -> None:
        """``simkeep --help`` shows each lazy sub-command with the help its own module gives it."""
        result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        for name, (module, attribute, shown) in LAZY_COMMANDS.items():
            target = getattr(importlib.import_module(module), attribute)
            if isinstance(target, typer.Typer):
                real = target.info.help
            else:
                real = (target.__doc__ or "").strip().splitlines()[0]
            assert shown == real, name
            assert f" {name} " in result.output
            assert shown in result.output

    def test_help_imports_no_subcommand_module(self) -> None:
        """Listing the commands imports none of the sub-commands' modules, nor SQLAlchemy or FastAPI."""
        script = (
            "import sys\n"
            "from typer.testing import CliRunner\n"
            "from simkeep.cli import LAZY_COMMANDS, app\n"
            "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
            "heavy = {m for m, _, _ in LAZY_COMMANDS.values()}\n"
            "heavy |= {'sqlalchemy', 'fastapi', 'simkeep.config'}\n"
            "print(sorted(heavy & sys.modules.keys()))\n"
        )
        command = [sys.executable, "-c", script]
        out = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603 - our own script
        assert out.stdout.strip() == "[]"

    def test_subcommand_runs_and_shows_its_own_help(self) -> None:
        """A lazy sub-command is imported when asked for: its help lists its own commands."""
        result = CliRunner().invoke(app, ["sims", "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "import" in result.output
        assert "SIM cards and SIM stock." in result.output

    def test_unknown_command_suggests_a_lazy_one(self) -> None:
        """A mistyped sub-command is refused with the nearest name, lazy ones included."""
        result = CliRunner().invoke(app, ["simz"], env={"COLUMNS": "200"})
        assert result.exit_code == 2
        assert "'sims'" in result.output


def test_bulk_imports_do_not_load_the_web_framework() -> None:
    """The import commands' modules (and the domain errors they raise) do not import FastAPI: it cost every
    such command 0.2 s of start-up (1.13 -> 0.91 s for an empty SIM file)."""
    script = (
        "import sys\n"
        "import simkeep.errors, simkeep.sims.importer, simkeep.lines.importer, simkeep.keepalive.importer\n"
        "import simkeep.audit.service\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi', 'starlette'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)  # noqa: S603
    assert out.stdout.strip() == "[]"
