"""Shipping tests use the replacement tests' world (a store, staff, stock and a holder)."""

from tests.replacements.conftest import world  # noqa: F401 - the fixture, shared
