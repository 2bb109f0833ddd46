"""Logging cache failures without flooding the log while a cache is down."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

__all__ = ["FailureLog"]


class FailureLog:
    """Logs a cache failure at most once per `interval` seconds per operation.

    The next entry for an operation says how many failures were left out since the previous one, so
    an outage shows up as one line every `interval` seconds with a count, not one line per query.
    """

    __slots__ = ("_clock", "_event", "_interval", "_level", "_logger", "_next", "_suppressed")

    def __init__(
        self,
        logger: Any,
        event: str,
        *,
        level: str = "warning",
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._event = event
        self._level = level
        self._interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def record(self, operation: str, error: BaseException, **fields: object) -> None:
        """Log `error` from `operation` unless one was logged for it less than `interval` ago."""
        now = self._clock()
        if now < self._next.get(operation, -math.inf):
            self._suppressed[operation] = self._suppressed.get(operation, 0) + 1
            return
        self._next[operation] = now + self._interval
        suppressed = self._suppressed.pop(operation, 0)
        getattr(self._logger, self._level)(
            self._event,
            operation=operation,
            error_type=type(error).__qualname__,
            error=str(error),
            suppressed=suppressed,
            **fields,
        )
