"""Errors about lines."""

from __future__ import annotations

from simkeep.errors import Conflict, NotFound


class LineNotFound(NotFound):
    """No such line, or not one the caller may see."""

    code = "LINE_NOT_FOUND"


class LineRecycled(Conflict):
    """The number was recycled; nothing can be done on it any more."""

    code = "LINE_RECYCLED"
