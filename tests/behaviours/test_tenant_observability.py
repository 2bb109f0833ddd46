"""The tenant in logs, spans, metrics and audit records: shown when a dispatch has one, absent otherwise."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from structlog.contextvars import get_contextvars
from structlog.testing import capture_logs

from cqrskit import ConfigurationError, Context, QueryBus, Result
from cqrskit.behaviours import Audit, Logging, Metrics, Tracing
from tests.behaviours.observed_app import FindUser, MemoryAuditSink, Register, tracer_provider

ACME = Context(operation_id="op-1", tenant="acme")
PLAIN = Context(operation_id="op-2")
COUNTER = "cqrskit_dispatches_total"


async def succeed(message: Any, context: Context) -> Result[Any]:
    return Result.success("done")


class TestLogging:
    """Logging binds ``tenant`` and puts it on its event only when the context has one."""

    async def test_the_tenant_is_bound_and_logged(self) -> None:
        """Inside the dispatch ``tenant`` is bound; the dispatch_completed event carries it."""
        seen: dict[str, Any] = {}

        async def call_next(message: Any, context: Context) -> Result[Any]:
            seen.update(get_contextvars())
            return Result.success(None)

        with capture_logs() as logs:
            await Logging()(Register("a@example.com", "pw"), ACME, call_next)
        assert seen["tenant"] == "acme"
        assert logs[0]["tenant"] == "acme"
        assert get_contextvars() == {}

    async def test_no_tenant_no_key(self) -> None:
        """Without a tenant neither the bound ids nor the event have a ``tenant`` key."""
        seen: dict[str, Any] = {}

        async def call_next(message: Any, context: Context) -> Result[Any]:
            seen.update(get_contextvars())
            return Result.success(None)

        with capture_logs() as logs:
            await Logging()(Register("a@example.com", "pw"), PLAIN, call_next)
        assert "tenant" not in seen
        assert "tenant" not in logs[0]


class TestTracing:
    """Tracing sets ``cqrskit.tenant`` on the span when the context has a tenant."""

    async def test_the_span_carries_the_tenant(self) -> None:
        """A tenant's span has ``cqrskit.tenant``; a span without a tenant has no such attribute."""
        exporter = InMemorySpanExporter()
        tracing = Tracing(tracer_provider(exporter).get_tracer("tests"))
        await tracing(FindUser("x"), ACME, succeed)
        await tracing(FindUser("x"), PLAIN, succeed)
        with_tenant, without = exporter.get_finished_spans()
        assert (with_tenant.attributes or {})["cqrskit.tenant"] == "acme"
        assert "cqrskit.tenant" not in (without.attributes or {})


class TestMetrics:
    """Metrics: no tenant label unless asked; with ``tenant_label=True``, one series per tenant."""

    async def test_no_tenant_label_by_default(self) -> None:
        """By default the labels are as they were: a tenant's dispatch counts under its type alone."""
        registry = CollectorRegistry()
        await Metrics(registry)(FindUser("x"), ACME, succeed)
        labels = {"message_type": "FindUser", "status": "success", "error_type": ""}
        assert registry.get_sample_value(COUNTER, labels) == 1

    async def test_a_tenant_label_when_asked(self) -> None:
        """With ``tenant_label=True`` each tenant (and "" for none) has its own counter and histogram."""
        registry = CollectorRegistry()
        bus = QueryBus({FindUser: FindUserHandler()}, [Metrics(registry, tenant_label=True)])
        await bus.execute(FindUser("x"), ACME)
        await bus.execute(FindUser("x"), ACME)
        await bus.execute(FindUser("x"), PLAIN)
        labels = {"message_type": "FindUser", "status": "success", "error_type": ""}
        assert registry.get_sample_value(COUNTER, {**labels, "tenant": "acme"}) == 2
        assert registry.get_sample_value(COUNTER, {**labels, "tenant": ""}) == 1
        duration = "cqrskit_dispatch_duration_seconds_count"
        assert registry.get_sample_value(duration, {"message_type": "FindUser", "tenant": "acme"}) == 2

    def test_describe_and_repr_name_the_tenant_label_when_on(self) -> None:
        """The route inspector and the repr show ``tenant_label`` only when it is on."""
        on = Metrics(CollectorRegistry(), tenant_label=True)
        assert on.describe(FindUser)["tenant_label"] is True
        assert repr(on).endswith("tenant_label=True)")
        assert "tenant_label" not in Metrics(CollectorRegistry()).describe(FindUser)

    def test_one_registry_one_choice(self) -> None:
        """Two Metrics on one registry that disagree on tenant_label are refused at construction."""
        registry = CollectorRegistry()
        Metrics(registry)
        with pytest.raises(ConfigurationError, match="tenant_label"):
            Metrics(registry, tenant_label=True)


class FindUserHandler:
    async def handle(self, query: FindUser, context: Context) -> str:
        return "found"


class TestAudit:
    """An audit record names the tenant the dispatch acted for."""

    async def test_the_record_has_the_tenant(self) -> None:
        """The record's `tenant` is the context's; its plain form has the key only when set."""
        sink = MemoryAuditSink()
        await Audit(sink)(Register("a@example.com", "pw"), ACME, succeed)
        await Audit(sink)(Register("a@example.com", "pw"), PLAIN, succeed)
        assert [r.tenant for r in sink.records] == ["acme", None]
        assert sink.records[0].to_dict()["tenant"] == "acme"
        assert "tenant" not in sink.records[1].to_dict()
