"""Request ids: 32 hex characters, never repeated in a process, and a forked worker draws its own prefix."""

from __future__ import annotations

import os
import re

import pytest

from simkeep.request_id import new_request_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_ids_are_hex_and_unique() -> None:
    """A thousand ids in a row: each 32 hex characters, none repeated."""
    ids = [new_request_id() for _ in range(1000)]
    assert all(HEX32.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_has_its_own_prefix() -> None:
    """The child's ids start with another random prefix (so two workers never give the same id)."""
    parent = new_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send one id and leave at once
        os.close(read)
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert HEX32.fullmatch(child)
    assert child[:16] != parent[:16]
    assert new_request_id()[:16] == parent[:16]
