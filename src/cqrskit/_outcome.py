"""Turning an exception that left a pipeline into the dispatch's `Result`, at one place.

An unexpected exception is logged with its traceback exactly once per dispatch, by one mechanism: a
behaviour that logs it (`Logging`) marks it with `mark_logged`; the bus, where the exception becomes
the Result, logs it unless it carries that dispatch's mark. An exception raised outside every logging
behaviour (by a behaviour listed before `Logging`, or on a bus without one) carries no mark, and the
bus logs it.

A `ConnectionError` (refused, reset, aborted: Python's own family) anywhere in an exception's chain
means a dependency could not be reached: UNAVAILABLE, not FAILED. Integrations turn their own
connection failures into `UnavailableError` (``cqrskit.sqlalchemy`` does), so the core needs to know
no driver.
"""

from __future__ import annotations

import contextlib
from types import MappingProxyType
from typing import Any

from cqrskit._context import Context
from cqrskit._errors import DETAIL, DomainError
from cqrskit._loggable import loggable_exception
from cqrskit._results import Result, ResultError, failed_result
from cqrskit._status import OperationStatus

__all__ = ["INTERNAL_ERROR", "UNREACHABLE", "exception_status", "mark_logged", "result_from_exception"]

INTERNAL_ERROR = "an internal error occurred; quote the operation id when reporting it"
UNREACHABLE = "a service this operation needs is unavailable; try again later"
_INTERNAL_ERRORS = MappingProxyType({DETAIL: INTERNAL_ERROR})
_UNREACHABLE_ERRORS = MappingProxyType({DETAIL: UNREACHABLE})
_LOGGED = "_cqrskit_traceback_logged"
_CHAIN_LIMIT = 16
_UNAVAILABLE = OperationStatus.UNAVAILABLE


def mark_logged(exc: BaseException, context: Context) -> None:
    """Note on `exc` that it was logged, with its traceback, in the dispatch `context` belongs to.

    The mark names the dispatch, so an exception object raised again by a later dispatch is judged
    afresh.
    """
    # An exception class that takes no attributes stays unmarked: the bus logs it again, which beats
    # never.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _LOGGED, context.operation_id)


def _unreachable(exc: BaseException) -> bool:
    """Tell whether a `ConnectionError` is in `exc`'s chain (causes and contexts, 16 at most)."""
    current: BaseException | None = exc
    for _ in range(_CHAIN_LIMIT):
        if current is None:
            return False
        if isinstance(current, ConnectionError):
            return True
        current = current.__cause__ or current.__context__
    return False


def exception_status(exc: Exception) -> tuple[OperationStatus, bool]:
    """Return the status the bus gives `exc`, and whether it is unexpected (a bug: FAILED, traced).

    The observing behaviours ask this while the exception still travels up, so that each reports the
    status the caller will get.
    """
    if isinstance(exc, DomainError):
        return exc.status, False
    if isinstance(exc, ResultError) and exc.result.is_failure:
        return exc.result.status, False
    if _unreachable(exc):
        return _UNAVAILABLE, False
    return OperationStatus.FAILED, True


def result_from_exception(exc: Exception, message: Any, context: Context, *, logger: Any) -> Result[Any]:
    """Return the failed Result for `exc`; log an unexpected one with its traceback unless marked.

    Domain errors keep their status and their caller-facing errors. A connection failure is UNAVAILABLE
    with a fixed text. Anything else is FAILED with a fixed text: no exception text, stack or SQL
    leaves the process through a Result.
    """
    operation_id = context.operation_id
    if isinstance(exc, DomainError):
        if exc.status is _UNAVAILABLE:
            # Kept as the Result's cause, so that a nested command's unwrap lets an outer Retry judge it.
            return failed_result(_UNAVAILABLE, exc.errors, operation_id, exc)
        return Result.failure(exc.status, exc.errors).evolve(operation_id=operation_id)
    if isinstance(exc, ResultError) and exc.result.is_failure:
        return failed_result(exc.result.status, exc.result.errors, operation_id, exc)
    if _unreachable(exc):
        return failed_result(_UNAVAILABLE, _UNREACHABLE_ERRORS, operation_id, exc)
    if operation_id is None or getattr(exc, _LOGGED, None) != operation_id:
        logger.error(
            "dispatch_failed",
            message_type=type(message).__qualname__,
            operation_id=operation_id,
            correlation_id=context.correlation_id,
            error_type=type(exc).__qualname__,
            **loggable_exception(exc),
        )
    return failed_result(OperationStatus.FAILED, _INTERNAL_ERRORS, operation_id, exc)
