"""`Tracing`: one OpenTelemetry span per dispatch (extra ``otel``)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cqrskit._context import Context
from cqrskit._contracts import CallNext, Step
from cqrskit._errors import MissingExtraError
from cqrskit._messages import Command, Query, StreamQuery
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
from cqrskit._streams import CANCELLED as STREAM_CANCELLED
from cqrskit._streams import Stream, watch
from cqrskit.behaviours._outcomes import CANCELLED, SERVER_FAILURES, exception_status, type_name
from cqrskit.behaviours._redaction import field_plan, redacted_fields

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = ["Tracing"]

_SUCCESS = OperationStatus.SUCCESS
_PRIMITIVES = (str, bool, int, float)


class Tracing:
    """Wrap each dispatch in an OpenTelemetry span, named after its kind and type (``command Register``).

    The span carries ``cqrskit.message_type``, ``cqrskit.operation_id``, ``cqrskit.correlation_id``,
    ``cqrskit.causation_id`` and ``cqrskit.tenant`` (each when set) and, once the dispatch ends,
    ``cqrskit.status``; when an exception caused the outcome, ``error.type`` names its type (its text
    and stack are not recorded: they may hold data that must not leave the process, and Logging logs
    the traceback). The span status is ERROR for FAILED and TIMEOUT, and stays unset otherwise: an
    expected failure is no error of the system. The span is current for the rest of the pipeline, so
    spans your handler or a nested dispatch opens become its children. With `record_fields` the
    message's fields are added as ``cqrskit.field.<name>`` attributes, sensitive ones as ``"***"``.

    Its place is `Stage.TRACING`, outermost, so the span covers the whole pipeline and log lines
    inside it can carry its trace id.

    `tracer` defaults to ``opentelemetry.trace.get_tracer("cqrskit")``, which follows the global tracer
    provider. Needs ``pip install cqrskit[otel]``; without it, constructing this raises
    `MissingExtraError`.
    """

    __slots__ = (
        "_attach",
        "_detach",
        "_in_context",
        "_record_fields",
        "_status_cls",
        "_status_code",
        "_tracer",
    )
    stage = Stage.TRACING

    def __init__(self, tracer: Tracer | None = None, *, record_fields: bool = False) -> None:
        try:
            from opentelemetry import context as otel_context  # noqa: PLC0415 - the extra is optional
            from opentelemetry import trace  # noqa: PLC0415
        except ImportError:
            raise MissingExtraError("Tracing", "otel", "opentelemetry-api") from None
        self._tracer: Tracer = trace.get_tracer("cqrskit") if tracer is None else tracer
        # What trace.use_span does, without its generator-based context manager (a dispatch's cost).
        self._in_context = trace.set_span_in_context
        self._attach = otel_context.attach
        self._detach = otel_context.detach
        self._status_cls = trace.Status
        self._status_code = trace.StatusCode.ERROR
        self._record_fields = record_fields

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return the span name for `message_type`, and whether its fields are recorded."""
        described: dict[str, object] = {"span_name": _span_name(message_type)}
        described["record_fields"] = self._record_fields
        if self._record_fields:
            described["redacted_fields"] = field_plan(message_type).sensitive
        return described

    def _attributes(self, message: Any, context: Context) -> dict[str, Any]:
        """Return the attributes a dispatch's span starts with: its type, its ids, its fields if asked."""
        attributes: dict[str, Any] = {
            "cqrskit.message_type": type_name(type(message)),
            "cqrskit.operation_id": context.operation_id,
            "cqrskit.correlation_id": context.correlation_id,
        }
        if context.causation_id is not None:
            attributes["cqrskit.causation_id"] = context.causation_id
        if context.tenant is not None:
            attributes["cqrskit.tenant"] = context.tenant
        if self._record_fields:
            attributes.update(_field_attributes(message))
        return attributes

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the rest of the pipeline inside a span and record how it ended on it."""
        message_type = type(message)
        span = self._tracer.start_span(
            _span_name(message_type), attributes=self._attributes(message, context)
        )
        token = self._attach(self._in_context(span))
        try:
            result = await call_next(message, context)
            status = result.status
            if status is _SUCCESS:
                span.set_attribute("cqrskit.status", "success")
            else:
                self._finish(span, status, None)
        except Exception as exc:
            status, _ = exception_status(exc)
            self._finish(span, status, type_name(type(exc)))
            raise
        except asyncio.CancelledError:
            span.set_attribute("cqrskit.status", CANCELLED)
            raise
        finally:
            self._detach(token)
            span.end()
        return result

    def bind_stream(self, message_type: type) -> Step:
        """For a streaming query: one span from the opening to the end of the stream.

        Besides the usual attributes it carries ``cqrskit.items`` and ``cqrskit.stream_ended``
        (``completed``, ``closed``, ``failed`` or ``cancelled``); the span is current while each item
        is read, so the handler's own spans (a database fetch) become its children.
        """
        return functools.partial(self._stream, _span_name(message_type))

    async def _stream(
        self, span_name: str, message: Any, context: Context, call_next: CallNext
    ) -> Result[Any]:
        span = self._tracer.start_span(span_name, attributes=self._attributes(message, context))
        token = self._attach(self._in_context(span))
        opened = False
        try:
            result = await call_next(message, context)
            if result.is_failure:
                self._finish(span, result.status, None)
                return result
            opened = True
        except Exception as exc:
            status, _ = exception_status(exc)
            self._finish(span, status, type_name(type(exc)))
            raise
        except asyncio.CancelledError:
            span.set_attribute("cqrskit.status", CANCELLED)
            raise
        finally:
            self._detach(token)
            if not opened:
                span.end()
        in_span = self._in_context(span)

        def on_end(ended: str, items: int, error: BaseException | None) -> None:
            span.set_attribute("cqrskit.items", items)
            span.set_attribute("cqrskit.stream_ended", ended)
            if isinstance(error, Exception):
                status, _ = exception_status(error)
                self._finish(span, status, type_name(type(error)))
            elif ended == STREAM_CANCELLED:
                span.set_attribute("cqrskit.status", CANCELLED)
            else:
                span.set_attribute("cqrskit.status", "success")
            span.end()

        stream: Stream[Any] = result.data
        return result.success(watch(stream, on_end, lambda: self._attach(in_span), self._detach))

    def _finish(self, span: Span, status: OperationStatus, error_type: str | None) -> None:
        span.set_attribute("cqrskit.status", str(status))
        if error_type is not None:
            span.set_attribute("error.type", error_type)
        if status in SERVER_FAILURES:
            span.set_status(self._status_cls(self._status_code, error_type or str(status)))

    def __repr__(self) -> str:
        return f"Tracing(tracer={self._tracer!r}, record_fields={self._record_fields!r})"


_span_names: dict[type, str] = {}


def _span_name(message_type: type) -> str:
    try:
        return _span_names[message_type]
    except KeyError:
        pass
    if issubclass(message_type, Command):
        kind = "command"
    elif issubclass(message_type, (Query, StreamQuery)):
        kind = "query"
    else:
        kind = "message"
    name = _span_names[message_type] = f"{kind} {type_name(message_type)}"
    return name


def _field_attributes(message: object) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for name, value in redacted_fields(message).items():
        if value is None:
            continue  # OpenTelemetry attributes cannot be None
        attributes[f"cqrskit.field.{name}"] = value if isinstance(value, _PRIMITIVES) else str(value)
    return attributes
