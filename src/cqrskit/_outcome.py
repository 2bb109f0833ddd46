"""Turning an exception that left a pipeline into the dispatch's `Result`, at one place."""

from __future__ import annotations

import contextlib
from types import MappingProxyType
from typing import Any

import attrs

from cqrskit._context import Context
from cqrskit._errors import DETAIL, DomainError
from cqrskit._results import _NO_ERRORS, Result, ResultError
from cqrskit._status import OperationStatus

__all__ = ["INTERNAL_ERROR", "mark_logged", "result_from_exception", "was_logged"]

INTERNAL_ERROR = "an internal error occurred; quote the operation id when reporting it"
_INTERNAL_ERRORS = MappingProxyType({DETAIL: INTERNAL_ERROR})
_LOGGED = "_cqrskit_traceback_logged"


@attrs.define(repr=False, eq=False)
class _FailedResult(Result[Any]):
    """A failed Result that remembers, inside this process, the exception behind it.

    `Result.unwrap` chains that exception to the `ResultError` it raises, so when a nested command
    fails on a serialization failure or a deadlock and the outer handler unwraps its Result, the
    outer `Retry` sees the transient cause and runs the whole transaction again. The cause takes no
    part in equality or the repr, and never leaves the process.
    """

    _cause: BaseException | None = attrs.field(default=None, alias="cause")

    def _failure_cause(self) -> BaseException | None:
        return self._cause


def mark_logged(exc: BaseException, operation_id: str | None) -> None:
    """Note on `exc` that a behaviour logged it, in dispatch `operation_id`, with its traceback.

    The mark travels with the exception itself: an exception raised outside every logging behaviour
    (by a behaviour listed before `Logging`, say) carries none, and the bus logs it. It names the
    dispatch, so an exception object raised again by a later dispatch is judged afresh.
    """
    # An exception class that takes no attributes stays unmarked: the bus logs it again, which beats
    # never.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _LOGGED, operation_id)


def was_logged(exc: BaseException, operation_id: str | None) -> bool:
    """Return whether a behaviour marked `exc` with `mark_logged` in dispatch `operation_id`."""
    return operation_id is not None and getattr(exc, _LOGGED, None) == operation_id


def result_from_exception(
    exc: Exception, message: Any, context: Context, *, log: bool, logger: Any
) -> Result[Any]:
    """Return the failed Result for `exc`; log an unexpected one, with its traceback, when `log`.

    Pass ``log=not was_logged(exc, operation_id)``: an exception a logging behaviour already logged
    is not logged twice.

    Domain errors keep their status and their caller-facing errors. Anything else is FAILED with a
    fixed text: no exception text, stack or SQL leaves the process through a Result.
    """
    operation_id = context.operation_id
    if isinstance(exc, DomainError):
        errors = exc.errors
        frozen = MappingProxyType(dict(errors)) if errors else _NO_ERRORS
        return Result(exc.status, None, frozen, (), None, None, operation_id)
    if isinstance(exc, ResultError) and exc.result.is_failure:
        return _FailedResult(exc.result.status, None, exc.result.errors, (), None, None, operation_id, exc)
    if log:
        logger.error(
            "dispatch_failed",
            message_type=type(message).__qualname__,
            operation_id=operation_id,
            correlation_id=context.correlation_id,
            error_type=type(exc).__qualname__,
            exc_info=exc,
        )
    return _FailedResult(OperationStatus.FAILED, None, _INTERNAL_ERRORS, (), None, None, operation_id, exc)
