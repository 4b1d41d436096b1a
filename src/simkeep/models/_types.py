"""Column helpers shared by the models."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import Enum

from simkeep.db import sqlite_checks  # noqa: F401 - registers SQLite's form of the enum CHECK constraints


def enum_type(enum_cls: type[enum.Enum], name: str) -> Enum:
    """A portable enum column: stored as its string value, with a named CHECK constraint."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(str(m.value)) for m in enum_cls) + 8,
        values_callable=_values,
        validate_strings=True,
    )


def _values(enum_cls: Any) -> list[str]:
    return [str(member.value) for member in enum_cls]
