"""The settings this session added refuse bad values with a clear error (nothing starts with them)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simkeep.config import Settings


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("http_keepalive_seconds", 0),
        ("http_keepalive_seconds", 3601),
        ("camara_facts_poll_seconds", 0),
        ("camara_facts_poll_seconds", 0.6),  # above 0.5 the one-second freshness bound could not hold
        ("camara_facts_cache_max_lines", -1),
    ],
)
def test_bad_values_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(environment="test", **{field: value})


def test_good_values_are_taken() -> None:
    settings = Settings(
        environment="test", http_keepalive_seconds=65, camara_facts_poll_seconds=0.5, camara_facts_cache=False
    )
    assert (settings.http_keepalive_seconds, settings.camara_facts_poll_seconds) == (65, 0.5)
    assert settings.camara_facts_cache is False
