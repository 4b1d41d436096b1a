"""The lines tests' collection: the first-load variant of the import tests runs on PostgreSQL only."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the ``first-load`` variant on SQLite, which has no first load (see ``load_mode``)."""
    keep: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("load_mode") == "first-load" and params.get("backend") == "sqlite":
            left_out.append(item)
        else:
            keep.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = keep
