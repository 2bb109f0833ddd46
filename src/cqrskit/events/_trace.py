"""Trace context through the outbox: W3C ``traceparent`` written into envelopes, and read back.

When OpenTelemetry (extra ``otel``) is installed, the envelope an event or a command is recorded in
carries the trace context of the span current at that moment; the relay's publish span and the
consumer's handling span continue it, so one trace runs from the HTTP request that committed an
event to the projection that handled it in another process. Without OpenTelemetry every function
here does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

try:  # the extra is optional: without it, envelopes carry no trace context
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace

    _ENABLED = True
except ImportError:  # pragma: no cover - exercised by the packaging test's bare install
    _ENABLED = False

__all__ = ["consume_span", "current_trace_context", "publish_span"]

_TRACER = "cqrskit.events"


def current_trace_context() -> dict[str, str] | None:
    """Return the current span's W3C trace context (``traceparent``, ``tracestate``), None if none."""
    if not _ENABLED or not _trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    return carrier or None


def _extract(trace_context: Mapping[str, str] | None) -> Any:
    return _propagate.extract(dict(trace_context)) if trace_context else None


@contextlib.contextmanager
def publish_span(carriers: Sequence[Mapping[str, str] | None]) -> Iterator[None]:
    """Trace a relay's publishing of a batch, given each envelope's trace context.

    It is a child of their trace when they share one, else a span with links.

    A batch whose rows came from one trace continues it; a batch that serves several traces gets a
    span of its own with a link to each.
    """
    if not _ENABLED:
        yield
        return
    contexts = [c for c in carriers if c]
    parents = {c.get("traceparent") for c in contexts}
    parent = _extract(contexts[0]) if len(parents) == 1 and len(contexts) == len(carriers) else None
    links = []
    if parent is None:
        for carrier in contexts:
            span_context = _trace.get_current_span(_extract(carrier)).get_span_context()
            if span_context.is_valid:
                links.append(_trace.Link(span_context))
    tracer = _trace.get_tracer(_TRACER)
    with tracer.start_as_current_span(
        "outbox publish",
        context=parent,
        kind=_trace.SpanKind.PRODUCER,
        links=links,
        attributes={"messaging.batch.message_count": len(carriers)},
    ):
        yield


@contextlib.contextmanager
def consume_span(
    name: str, message_id: str, trace_context: Mapping[str, str] | None, queue: str
) -> Iterator[None]:
    """Trace the handling of one delivery, as a child of the span that recorded its message."""
    if not _ENABLED:
        yield
        return
    tracer = _trace.get_tracer(_TRACER)
    with tracer.start_as_current_span(
        f"consume {name}",
        context=_extract(trace_context),
        kind=_trace.SpanKind.CONSUMER,
        attributes={
            "messaging.destination.name": queue,
            "messaging.message.id": message_id,
            "cqrskit.message_type": name,
        },
    ):
        yield
