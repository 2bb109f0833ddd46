"""`Logging`: one structlog event per dispatch, with the dispatch's ids bound for everything inside."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import structlog

from cqrskit._context import Context
from cqrskit._contracts import CallNext, Step
from cqrskit._loggable import loggable_exception
from cqrskit._logs import library_logger
from cqrskit._outcome import mark_logged
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
from cqrskit._streams import CANCELLED as STREAM_CANCELLED
from cqrskit._streams import Stream, watch
from cqrskit.behaviours._log_context import DispatchIds, is_lazy_logger, logger_label
from cqrskit.behaviours._outcomes import CANCELLED, EXPECTED_FAILURES, exception_status, type_name
from cqrskit.behaviours._redaction import redacted_fields, sensitive_fields

__all__ = ["Logging"]

_INFO = logging.INFO
_WARNING = logging.WARNING
_ERROR = logging.ERROR
_SUCCESS = OperationStatus.SUCCESS
_perf_counter = time.perf_counter
_STREAM_EVENT = "stream_completed"
_METHODS = {_INFO: "info", _WARNING: "warning", _ERROR: "error"}


class Logging:
    """Log each dispatch once, and bind its ids so every log line inside it carries them.

    For the length of a dispatch it binds ``operation_id``, ``correlation_id``, ``causation_id``,
    ``message_type``, ``principal_id`` and, when the context has one, ``tenant`` with
    `structlog.contextvars` (add `structlog.contextvars.merge_contextvars` to your processors to see
    them), and restores the previous values afterwards, also when the dispatch fails or is cancelled.
    When the dispatch ends it logs one ``dispatch_completed`` event with ``status``, ``duration_ms``,
    ``tenant`` (when set) and the message's fields (sensitive ones,
    ``attrs.field(metadata={"sensitive": True})``, shown as ``"***"``):

    - at info on SUCCESS;
    - at warning on an expected failure (validation, not found, unauthenticated, unauthorized, conflict,
      timeout) and on cancellation (status ``"cancelled"``);
    - at error on UNAVAILABLE (a dependency down or unreachable), without a traceback;
    - at error on FAILED, with the traceback (``exc_info``) when an exception caused it (for a
      database error, its stack and a summary without the error's text, which can quote row values:
      ``exception`` and ``database_error``). The exception
      then goes on up to the bus, which turns it into the Result and does not log it a second time;
      one raised outside this behaviour (by a behaviour listed before it) never passed through it, and
      the bus logs that one: an exception is logged exactly once either way.

    Its place is `Stage.LOGGING`: outermost but for `Tracing`, so its event covers everything the
    other behaviours decide.

    `logger` defaults to structlog's ``"cqrskit"`` logger (quiet below warning until structlog
    is configured: see docs/behaviours/logging.md); cqrskit never configures structlog. When
    your logger filters by level (``structlog.make_filtering_bound_logger(logging.WARNING)``), a
    successful dispatch costs little more than binding the ids. Set `log_fields` to False to leave the
    message's fields out of the event.
    """

    __slots__ = (
        "_ids",
        "_is_enabled_for",
        "_label",
        "_lazy",
        "_levels",
        "_levels_key",
        "_log_fields",
        "_logger",
    )
    stage = Stage.LOGGING

    def __init__(self, logger: Any = None, *, log_fields: bool = True) -> None:
        self._logger: Any = library_logger("cqrskit") if logger is None else logger
        # A lazy proxy is resolved per dispatch, so configuration done after the container was built
        # (and structlog.testing.capture_logs) applies to it.
        self._lazy = is_lazy_logger(self._logger)
        self._label = logger_label(self._logger, "cqrskit" if logger is None else None)
        self._is_enabled_for = None if self._lazy else getattr(self._logger, "is_enabled_for", None)
        self._levels: Any = None
        self._levels_key: tuple[object, ...] | None = None
        self._log_fields = log_fields
        self._ids = DispatchIds()

    def bind(self, message_type: type) -> Logging:
        """Stay in every pipeline; work out `message_type`'s sensitive fields now."""
        sensitive_fields(message_type)
        return self

    def bind_stream(self, message_type: type) -> Step:
        """For a streaming query: log once when the stream ends, with its item count and how it ended."""
        sensitive_fields(message_type)
        return self._stream

    async def _stream(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Log a failed opening as any dispatch; on success, log ``stream_completed`` when it ends.

        The event carries ``items``, ``duration_ms`` (opening to end) and ``ended``: ``completed``,
        ``closed`` (the consumer stopped early), ``failed`` or ``cancelled``; its status is the one the
        consumer sees (SUCCESS unless it failed).
        """
        started = _perf_counter()
        result = await self(message, context, call_next, _opening=True)
        if result.is_failure:
            return result
        ids = self._ids
        principal = context.principal
        bind_args = (
            context.operation_id,
            context.correlation_id,
            context.causation_id,
            type(message).__qualname__,
            None if principal is None else principal.id,
        )
        tenant = context.tenant

        def on_end(ended: str, items: int, error: BaseException | None) -> None:
            tokens = ids.bind(*bind_args, tenant=tenant)
            try:
                extra: dict[str, Any] = {"items": items, "ended": ended}
                if not isinstance(error, Exception):
                    if ended == STREAM_CANCELLED:
                        self._emit(
                            _WARNING, message, context, CANCELLED, started, event=_STREAM_EVENT, **extra
                        )
                    else:
                        self._emit(_INFO, message, context, _SUCCESS, started, event=_STREAM_EVENT, **extra)
                    return
                status, unexpected = exception_status(error)
                self._emit(
                    _level_for(status),
                    message,
                    context,
                    status,
                    started,
                    event=_STREAM_EVENT,
                    error_type=type_name(type(error)),
                    exc_info=error if unexpected else None,
                    **extra,
                )
                if unexpected:
                    mark_logged(error, context)
            finally:
                ids.reset(tokens)

        # Each item is read with the dispatch's ids bound, so the handler's log lines carry them.
        stream: Stream[Any] = result.data
        return result.success(watch(stream, on_end, lambda: ids.bind(*bind_args, tenant=tenant), ids.reset))

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return the logger and which of `message_type`'s fields are redacted."""
        return {
            "logger": self._label,
            "log_fields": self._log_fields,
            "redacted_fields": sensitive_fields(message_type),
        }

    async def __call__(
        self, message: Any, context: Context, call_next: CallNext, *, _opening: bool = False
    ) -> Result[Any]:
        """Run the rest of the pipeline with the ids bound, then log how it ended."""
        principal = context.principal
        ids = self._ids
        tokens = ids.bind(
            context.operation_id,
            context.correlation_id,
            context.causation_id,
            type(message).__qualname__,
            None if principal is None else principal.id,
            tenant=context.tenant,
        )
        started = _perf_counter()
        try:
            try:
                result = await call_next(message, context)
            except Exception as exc:
                status, unexpected = exception_status(exc)
                level = _level_for(status)
                self._emit(
                    level,
                    message,
                    context,
                    status,
                    started,
                    error_type=type_name(type(exc)),
                    exc_info=exc if unexpected else None,
                )
                if unexpected:
                    mark_logged(exc, context)
                raise
            except asyncio.CancelledError:
                self._emit(_WARNING, message, context, CANCELLED, started)
                raise
            status = result.status
            if status is _SUCCESS and _opening:
                pass  # a stream that opened is logged when it ends (`_stream`)
            elif status is _SUCCESS:
                is_enabled_for = self._is_enabled_for
                if self._lazy:
                    is_enabled_for = getattr(self._levels_logger(), "is_enabled_for", None)
                if is_enabled_for is None or is_enabled_for(_INFO):
                    self._emit(_INFO, message, context, status, started)
            else:
                self._emit(_level_for(status), message, context, status, started, errors=result.errors)
            return result
        finally:
            ids.reset(tokens)

    def _levels_logger(self) -> Any:
        """Return the lazy logger resolved, to ask it which levels are on (the success path's check).

        Resolving a lazy proxy builds a new logger (and, by default, a new PrintLogger): microseconds
        a successful dispatch need not pay when the answer is "info is off". Which levels are on
        depends on the wrapper class and the logger factory, so the resolved logger is kept until
        structlog is configured with another of either. Events are still built from a fresh
        resolution, so processors configured later (``capture_logs`` too) apply to them.
        """
        config = structlog.get_config()
        # Whether structlog is configured decides what cqrskit's own logger resolves to.
        key = (config["wrapper_class"], config["logger_factory"], structlog.is_configured())
        if key != self._levels_key:
            self._levels = self._logger.bind()
            self._levels_key = key
        return self._levels

    def _emit(
        self,
        level: int,
        message: Any,
        context: Context,
        status: str,
        started: float,
        *,
        error_type: str | None = None,
        exc_info: BaseException | None = None,
        errors: Mapping[str, str] | None = None,
        event: str = "dispatch_completed",
        **extra: Any,
    ) -> None:
        if self._lazy:
            logger = self._logger.bind()  # the logger as configured now
            is_enabled_for = getattr(logger, "is_enabled_for", None)
        else:
            logger = self._logger
            is_enabled_for = self._is_enabled_for
        if is_enabled_for is not None and not is_enabled_for(level):
            return
        fields: dict[str, Any] = {
            "status": str(status),
            "duration_ms": round((_perf_counter() - started) * 1000.0, 3),
            "message_type": type_name(type(message)),
            "operation_id": context.operation_id,
        }
        if context.tenant is not None:
            fields["tenant"] = context.tenant
        if self._log_fields:
            fields["fields"] = redacted_fields(message)
        if error_type is not None:
            fields["error_type"] = error_type
        if errors:
            # Field names only: error texts may quote the rejected (possibly sensitive) input.
            fields["error_fields"] = sorted(errors)
        if exc_info is not None:
            fields.update(loggable_exception(exc_info))
        fields.update(extra)
        getattr(logger, _METHODS[level])(event, **fields)

    def __repr__(self) -> str:
        return f"Logging(logger={self._label}, log_fields={self._log_fields!r})"


def _level_for(status: OperationStatus) -> int:
    if status is _SUCCESS:
        return _INFO
    if status in EXPECTED_FAILURES:
        return _WARNING
    return _ERROR
