"""Fixtures of the network tests: one real osmo-hlr per test session, emptied before each test using it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simkeep.network.osmo_hlr import OsmoHlr
from tests.network.osmo import OSMO_HLR, OSMO_HLR_MISSING, OsmoHlrHandle, start_osmo_hlr


@pytest.fixture(scope="session")
def osmo_hlr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OsmoHlrHandle]:
    """A running osmo-hlr on its own loopback address, with a temporary config and database."""
    if OSMO_HLR is None:
        pytest.skip(OSMO_HLR_MISSING)
    handle = start_osmo_hlr(tmp_path_factory.mktemp("osmo-hlr"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def hlr_handle(osmo_hlr: OsmoHlrHandle) -> OsmoHlrHandle:
    """The session's osmo-hlr, running (restarted if a test killed it) and without subscribers."""
    if osmo_hlr.process is None or osmo_hlr.process.poll() is not None:
        osmo_hlr.start()
    osmo_hlr.wipe()
    return osmo_hlr


@pytest.fixture
def hlr(hlr_handle: OsmoHlrHandle) -> Iterator[OsmoHlr]:
    """An :class:`OsmoHlr` adapter on the empty, running osmo-hlr."""
    adapter = hlr_handle.adapter()
    try:
        yield adapter
    finally:
        adapter.close()
