"""Tracing from the standard ``OTEL_*`` settings, and the Prometheus text for ``/metrics``.

Tracing is off unless ``OTEL_TRACES_EXPORTER`` (``console`` or ``otlp``) or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: then spans go to that exporter, named after
``OTEL_SERVICE_NAME`` (default ``users``). The OTLP exporter needs
``opentelemetry-exporter-otlp-proto-http`` and reads its own ``OTEL_EXPORTER_OTLP_*`` settings.
Without an exporter, the buses' `Tracing` behaviour records nothing (OpenTelemetry's API does
nothing until a tracer provider is set).
"""

from __future__ import annotations

# ruff: noqa: PLC0415 - the SDK and exporters are imported only when tracing is on
import os
from collections.abc import Mapping

_configured = False


def tracing_exporter(environ: Mapping[str, str] | None = None) -> str | None:
    """Return the exporter the ``OTEL_*`` settings ask for (``console``, ``otlp``), None for none."""
    env = os.environ if environ is None else environ
    exporter = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if exporter == "none":
        return None
    if exporter:
        return exporter
    return "otlp" if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else None


def configure_tracing() -> None:
    """Install a tracer provider with the configured exporter, once per process; nothing when off."""
    global _configured  # noqa: PLW0603 - one provider per process
    exporter_name = tracing_exporter()
    if _configured or exporter_name is None:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter()
    else:
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter_name!r}: this example knows console and otlp")
    service = os.environ.get("OTEL_SERVICE_NAME") or "users"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True


def metrics_text() -> tuple[bytes, str]:
    """Return the process's Prometheus metrics and their content type."""
    import prometheus_client

    return prometheus_client.generate_latest(), prometheus_client.CONTENT_TYPE_LATEST
