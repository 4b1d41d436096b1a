"""structlog set-up: JSON lines in production, readable console output otherwise."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import structlog

from simkeep.config import Settings


class StderrLogger:
    """Writes each rendered line to the process's standard error *as it is when the line is written*.

    structlog's PrintLogger keeps the stream it was made with; when a caller swaps ``sys.stderr`` for a while
    (a CLI runner, a test capture) and closes its stand-in, later lines would go to a closed file.
    """

    _lock = threading.Lock()

    def msg(self, message: str) -> None:
        """Write one line."""
        with self._lock:
            stream = sys.stderr
            stream.write(message + "\n")
            stream.flush()

    debug = info = warning = warn = error = err = critical = exception = fatal = failure = log = msg


def _stderr_logger(*_args: Any) -> StderrLogger:
    return StderrLogger()


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the standard library's root logger once per process."""
    json_logs = settings.log_json if settings.log_json is not None else settings.environment == "production"
    level = logging.getLevelName(settings.log_level.upper())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level if isinstance(level, int) else 20),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A bound logger for ``name``."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
