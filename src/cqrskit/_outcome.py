"""Turning an exception that left a pipeline into the dispatch's `Result`, at one place.

An unexpected exception is logged with its traceback exactly once per dispatch, by one mechanism: a
behaviour that logs it (`Logging`) marks it with `mark_logged`; the bus, where the exception becomes
the Result, logs it unless it carries that dispatch's mark. An exception raised outside every logging
behaviour (by a behaviour listed before `Logging`, or on a bus without one) carries no mark, and the
bus logs it.
"""

from __future__ import annotations

import contextlib
from types import MappingProxyType
from typing import Any

from cqrskit._context import Context
from cqrskit._errors import DETAIL, DomainError
from cqrskit._results import Result, ResultError, failed_result
from cqrskit._status import OperationStatus

__all__ = ["INTERNAL_ERROR", "mark_logged", "result_from_exception"]

INTERNAL_ERROR = "an internal error occurred; quote the operation id when reporting it"
_INTERNAL_ERRORS = MappingProxyType({DETAIL: INTERNAL_ERROR})
_LOGGED = "_cqrskit_traceback_logged"


def mark_logged(exc: BaseException, context: Context) -> None:
    """Note on `exc` that it was logged, with its traceback, in the dispatch `context` belongs to.

    The mark names the dispatch, so an exception object raised again by a later dispatch is judged
    afresh.
    """
    # An exception class that takes no attributes stays unmarked: the bus logs it again, which beats
    # never.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _LOGGED, context.operation_id)


def result_from_exception(exc: Exception, message: Any, context: Context, *, logger: Any) -> Result[Any]:
    """Return the failed Result for `exc`; log an unexpected one with its traceback unless marked.

    Domain errors keep their status and their caller-facing errors. Anything else is FAILED with a
    fixed text: no exception text, stack or SQL leaves the process through a Result.
    """
    operation_id = context.operation_id
    if isinstance(exc, DomainError):
        return Result.failure(exc.status, exc.errors).evolve(operation_id=operation_id)
    if isinstance(exc, ResultError) and exc.result.is_failure:
        return failed_result(exc.result.status, exc.result.errors, operation_id, exc)
    if operation_id is None or getattr(exc, _LOGGED, None) != operation_id:
        logger.error(
            "dispatch_failed",
            message_type=type(message).__qualname__,
            operation_id=operation_id,
            correlation_id=context.correlation_id,
            error_type=type(exc).__qualname__,
            exc_info=exc,
        )
    return failed_result(OperationStatus.FAILED, _INTERNAL_ERRORS, operation_id, exc)
