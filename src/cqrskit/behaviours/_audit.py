"""`Audit`: who did what, when and with what outcome, handed to an async sink."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._loggable import loggable_exception
from cqrskit._logs import library_logger
from cqrskit._results import AffectedEntity, Result
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
from cqrskit.behaviours._log_context import logger_label
from cqrskit.behaviours._outcomes import exception_status, type_name
from cqrskit.behaviours._redaction import redacted_fields, sensitive_fields

__all__ = ["Audit", "AuditRecord", "AuditSink", "StructlogAuditSink"]

_UTC = dt.UTC
_now = dt.datetime.now
_perf_counter = time.perf_counter


class AuditSink(Protocol):
    """Where the `Audit` behaviour sends its records: ``await sink.write(record)``.

    Write the `AuditRecord` wherever your audit trail lives (a table, a log, a queue). An exception
    you raise is logged by `Audit` and never fails the dispatch. `StructlogAuditSink` is one to start
    with::

        class TableAuditSink:
            async def write(self, record: AuditRecord) -> None:
                await audit_table.insert(record.to_dict())
    """

    async def write(self, record: AuditRecord, /) -> None:
        """Store `record`."""


@attrs.frozen
class AuditRecord:
    """One audited dispatch: who asked, for what, when, and how it ended.

    `fields` are the message's fields, sensitive ones shown as ``"***"``. `started_at` is a
    timezone-aware UTC time; `duration_ms` how long the rest of the pipeline took.
    `affected_entities` are those of a successful Result; `error_type` names the exception type when
    an exception caused the outcome. `tenant` is the tenant the dispatch acted for (None: none).
    """

    operation_id: str | None
    correlation_id: str | None
    principal_id: str | None
    message_type: str
    fields: Mapping[str, Any] = attrs.field(hash=False)
    status: OperationStatus
    affected_entities: tuple[AffectedEntity, ...]
    started_at: dt.datetime
    duration_ms: float
    causation_id: str | None = None
    error_type: str | None = None
    tenant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the record as plain data (strings, numbers, lists and dicts), for a log line or JSON.

        ``tenant`` is there only when the dispatch had one.
        """
        plain = {
            "operation_id": self.operation_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "principal_id": self.principal_id,
            "message_type": self.message_type,
            "fields": dict(self.fields),
            "status": str(self.status),
            "error_type": self.error_type,
            "affected_entities": [attrs.asdict(entity) for entity in self.affected_entities],
            "started_at": self.started_at.isoformat(),
            "duration_ms": self.duration_ms,
        }
        if self.tenant is not None:  # without tenants a record reads as it always did
            plain["tenant"] = self.tenant
        return plain


class StructlogAuditSink:
    """An `AuditSink` that logs each record as one ``audit`` event at info, its fields as keys.

    `logger` defaults to structlog's ``"cqrskit.audit"`` logger (quiet below warning until structlog
    is configured: see docs/behaviours/logging.md), so you can route audit lines apart
    from the rest. Writing is synchronous logging: it does not wait on I/O.
    """

    __slots__ = ("_label", "_logger")

    def __init__(self, logger: Any = None) -> None:
        self._logger: Any = library_logger("cqrskit.audit") if logger is None else logger
        self._label = logger_label(self._logger, "cqrskit.audit" if logger is None else None)

    async def write(self, record: AuditRecord) -> None:
        """Log `record`."""
        self._logger.info("audit", **record.to_dict())

    def __repr__(self) -> str:
        return f"StructlogAuditSink(logger={self._label})"


class Audit:
    """Hand an `AuditRecord` of each dispatch to `sink` (``await sink.write(record)``).

    The record says who asked (principal id), what (message type and its fields, sensitive ones as
    ``"***"``), when (UTC start time and duration), with which ids, and how it ended (status, affected
    entities, and the exception type when an exception caused the outcome; the exception then goes on
    up to the bus). A sink that raises never fails the dispatch: its error is logged (event
    ``audit_sink_failed``, with traceback) and the Result is returned as if nothing happened. A
    cancelled dispatch has no outcome and is not audited.

    `message_types` limits auditing to those types and their subclasses (say, your commands that
    change money); the others' pipelines leave Audit out and pay nothing for it.

    Its place is `Stage.AUDIT`: inside Tracing, Logging and Metrics, outside the rest, so denied and
    invalid requests are audited too.
    """

    __slots__ = ("_logger", "_message_types", "_sink")
    stage = Stage.AUDIT

    def __init__(
        self, sink: AuditSink, *, message_types: Iterable[type] | None = None, logger: Any = None
    ) -> None:
        self._sink = sink
        self._message_types = None if message_types is None else tuple(message_types)
        self._logger: Any = library_logger("cqrskit") if logger is None else logger

    def bind(self, message_type: type) -> Audit | None:
        """Leave the pipeline (None) of a type that is not audited; work out its sensitive fields now."""
        if self._message_types is not None and not issubclass(message_type, self._message_types):
            return None
        sensitive_fields(message_type)
        return self

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return the sink, whether `message_type` is audited, and which of its fields are redacted."""
        return {
            "sink": repr(self._sink),
            "audited": self.bind(message_type) is not None,
            "redacted_fields": sensitive_fields(message_type),
        }

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the rest of the pipeline, then write the record of how it went."""
        started_at = _now(_UTC)
        started = _perf_counter()
        try:
            result = await call_next(message, context)
        except Exception as exc:
            status, _ = exception_status(exc)
            await self._write(
                message, context, started_at, started, status=status, error_type=type_name(type(exc))
            )
            raise
        await self._write(
            message, context, started_at, started, status=result.status, affected=result.affected_entities
        )
        return result

    async def _write(
        self,
        message: Any,
        context: Context,
        started_at: dt.datetime,
        started: float,
        *,
        status: OperationStatus,
        affected: tuple[AffectedEntity, ...] = (),
        error_type: str | None = None,
    ) -> None:
        principal = context.principal
        record = AuditRecord(
            operation_id=context.operation_id,
            correlation_id=context.correlation_id,
            principal_id=None if principal is None else principal.id,
            message_type=type_name(type(message)),
            fields=redacted_fields(message),
            status=status,
            affected_entities=affected,
            started_at=started_at,
            duration_ms=round((_perf_counter() - started) * 1000.0, 3),
            causation_id=context.causation_id,
            error_type=error_type,
            tenant=context.tenant,
        )
        try:
            await self._sink.write(record)
        except Exception as exc:  # noqa: BLE001 - logged without the text of a database error; an audit sink must never fail the command
            self._logger.error(  # noqa: TRY400 - the traceback comes from loggable_exception
                "audit_sink_failed",
                sink=repr(self._sink),
                operation_id=context.operation_id,
                message_type=record.message_type,
                error_type=type_name(type(exc)),
                **loggable_exception(exc),
            )

    def __repr__(self) -> str:
        types = None if self._message_types is None else [t.__qualname__ for t in self._message_types]
        return f"Audit(sink={self._sink!r}, message_types={types!r})"
