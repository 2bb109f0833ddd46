"""What the observing behaviours (Logging, Tracing, Metrics, Audit) agree on about an outcome.

An exception that leaves the handler becomes a Result at the bus's outermost point (`cqrskit._outcome`);
these helpers predict that Result's status while the exception is still travelling up, so every
behaviour reports the same status the caller will get.
"""

from __future__ import annotations

from typing import Final

from cqrskit._outcome import exception_status
from cqrskit._status import OperationStatus

__all__ = ["CANCELLED", "EXPECTED_FAILURES", "SERVER_FAILURES", "exception_status", "type_name"]

CANCELLED: Final = "cancelled"
"""The status the observing behaviours report for a dispatch that was cancelled (no Result exists)."""

EXPECTED_FAILURES: Final = frozenset(
    {
        OperationStatus.VALIDATION_ERROR,
        OperationStatus.NOT_FOUND,
        OperationStatus.UNAUTHORIZED,
        OperationStatus.UNAUTHENTICATED,
        OperationStatus.CONFLICT,
        OperationStatus.TIMEOUT,
    }
)
"""Failures that are part of normal operation: logged as warnings, not errors."""

SERVER_FAILURES: Final = frozenset(
    {OperationStatus.FAILED, OperationStatus.TIMEOUT, OperationStatus.UNAVAILABLE}
)
"""Statuses a trace marks as an error."""


def type_name(cls: type) -> str:
    """Return the name logs, spans, metrics and audit records use for a message or exception type."""
    return cls.__qualname__
