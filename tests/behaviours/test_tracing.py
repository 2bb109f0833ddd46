from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

from cqrskit import Context, MissingExtraError, OperationStatus, Result, ValidationFailedError
from cqrskit.behaviours import Tracing
from tests.behaviours.observed_app import (
    Connect,
    Credentials,
    FindUser,
    ObservedContainer,
    Register,
    tracer_provider,
)

CONTEXT = Context(correlation_id="corr-1", causation_id="cause-1", operation_id="op-1")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    return tracer_provider(exporter)


@pytest.fixture
def tracing(provider: TracerProvider) -> Tracing:
    return Tracing(provider.get_tracer("tests"))


async def succeed(message: Any, context: Context) -> Result[Any]:
    return Result.success("done")


class TestTracingDirect:
    """Tracing called with a fake call_next."""

    async def test_one_span_with_the_dispatch_attributes(
        self, tracing: Tracing, exporter: InMemorySpanExporter
    ) -> None:
        """A success gives one span named after the message, carrying its ids and status."""
        await tracing(Register("a@example.com", "pw"), CONTEXT, succeed)
        (span,) = exporter.get_finished_spans()
        assert span.name == "command Register"
        assert dict(span.attributes or {}) == {
            "cqrskit.message_type": "Register",
            "cqrskit.operation_id": "op-1",
            "cqrskit.correlation_id": "corr-1",
            "cqrskit.causation_id": "cause-1",
            "cqrskit.status": "success",
        }
        assert span.status.status_code is StatusCode.UNSET

    async def test_the_span_is_current_for_the_rest_of_the_pipeline(
        self, tracing: Tracing, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """A span the handler opens is a child of the dispatch's span."""

        async def handler(message: Any, context: Context) -> Result[Any]:
            with provider.get_tracer("handler").start_as_current_span("db query"):
                return Result.success(None)

        await tracing(FindUser("x"), CONTEXT, handler)
        child, parent = exporter.get_finished_spans()
        assert parent.name == "query FindUser"
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id

    async def test_an_unexpected_exception_sets_error_and_its_type(
        self, tracing: Tracing, exporter: InMemorySpanExporter
    ) -> None:
        """An unexpected exception marks the span ERROR with error.type, and propagates."""

        async def broken(message: Any, context: Context) -> Result[Any]:
            raise KeyError("password=hunter2")

        with pytest.raises(KeyError):
            await tracing(FindUser("x"), CONTEXT, broken)
        (span,) = exporter.get_finished_spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["error.type"] == "KeyError"
        assert span.attributes["cqrskit.status"] == "failed"
        assert span.events == ()  # the exception's text is not recorded
        assert "hunter2" not in repr(span.to_json())

    @pytest.mark.parametrize(
        ("status", "code"),
        [
            (OperationStatus.TIMEOUT, StatusCode.ERROR),
            (OperationStatus.FAILED, StatusCode.ERROR),
            (OperationStatus.NOT_FOUND, StatusCode.UNSET),
            (OperationStatus.UNAUTHORIZED, StatusCode.UNSET),
        ],
    )
    async def test_span_status_follows_the_result_status(
        self, tracing: Tracing, exporter: InMemorySpanExporter, status: OperationStatus, code: StatusCode
    ) -> None:
        """FAILED and TIMEOUT results are errors of the system; expected failures are not."""

        async def fail(message: Any, context: Context) -> Result[Any]:
            return Result.failure(status)

        await tracing(FindUser("x"), CONTEXT, fail)
        (span,) = exporter.get_finished_spans()
        assert span.status.status_code is code
        assert span.attributes is not None
        assert span.attributes["cqrskit.status"] == str(status)

    async def test_a_raised_expected_failure_is_not_an_error(
        self, tracing: Tracing, exporter: InMemorySpanExporter
    ) -> None:
        """A ValidationFailedError is recorded by status and type, with the span status unset."""

        async def invalid(message: Any, context: Context) -> Result[Any]:
            raise ValidationFailedError({"email": "bad"})

        with pytest.raises(ValidationFailedError):
            await tracing(FindUser("x"), CONTEXT, invalid)
        (span,) = exporter.get_finished_spans()
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes is not None
        assert span.attributes["cqrskit.status"] == "validation_error"
        assert span.attributes["error.type"] == "ValidationFailedError"

    async def test_cancellation_ends_the_span_and_propagates(
        self, tracing: Tracing, exporter: InMemorySpanExporter
    ) -> None:
        """A cancelled dispatch still ends its span, marked cancelled."""

        async def cancelled(message: Any, context: Context) -> Result[Any]:
            raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await tracing(FindUser("x"), CONTEXT, cancelled)
        (span,) = exporter.get_finished_spans()
        assert span.attributes is not None
        assert span.attributes["cqrskit.status"] == "cancelled"

    async def test_recorded_fields_are_redacted(
        self, provider: TracerProvider, exporter: InMemorySpanExporter
    ) -> None:
        """With record_fields, fields become attributes and sensitive ones read "***"."""
        tracing = Tracing(provider.get_tracer("tests"), record_fields=True)
        await tracing(Register("a@example.com", "hunter2"), CONTEXT, succeed)
        await tracing(Connect(Credentials("alice", "s3cret")), CONTEXT, succeed)
        register, connect = exporter.get_finished_spans()
        assert register.attributes is not None
        assert register.attributes["cqrskit.field.email"] == "a@example.com"
        assert register.attributes["cqrskit.field.password"] == "***"
        assert "s3cret" not in repr(connect.to_json())
        assert "hunter2" not in repr(register.to_json())

    def test_describe_and_repr(self, tracing: Tracing) -> None:
        """describe() gives the span name per message type; the repr shows the settings."""
        assert tracing.describe(FindUser) == {"span_name": "query FindUser", "record_fields": False}
        assert Tracing(record_fields=True).describe(Register)["redacted_fields"] == ("password",)
        assert repr(tracing).startswith("Tracing(tracer=")

    async def test_the_default_tracer_follows_the_global_provider(
        self, provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a tracer, Tracing asks opentelemetry for the "cqrskit" tracer."""
        asked: list[str] = []

        def get_tracer(name: str, *args: Any, **kwargs: Any) -> trace.Tracer:
            asked.append(name)
            return provider.get_tracer(name)

        monkeypatch.setattr(trace, "get_tracer", get_tracer)
        await Tracing()(FindUser("x"), CONTEXT, succeed)
        assert asked == ["cqrskit"]
        [span] = exporter.get_finished_spans()
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "cqrskit"

    def test_without_opentelemetry_it_says_which_extra_to_install(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Constructing Tracing without opentelemetry raises MissingExtraError naming the extra."""
        monkeypatch.setitem(sys.modules, "opentelemetry", None)
        with pytest.raises(MissingExtraError, match=r"pip install cqrskit\[otel\]") as raised:
            Tracing()
        assert raised.value.extra == "otel"
        assert isinstance(raised.value, ImportError)

    def test_the_package_imports_without_the_optional_extras(self) -> None:
        """`import cqrskit.behaviours` works when neither opentelemetry nor prometheus_client is there."""
        code = (
            "import sys; sys.modules['opentelemetry'] = None; sys.modules['prometheus_client'] = None\n"
            "import cqrskit.behaviours\n"
            "try:\n    cqrskit.behaviours.Metrics()\nexcept ImportError as e:\n    print(e)\n"
        )
        done = subprocess.run(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        assert "pip install cqrskit[prometheus]" in done.stdout


class TestTracingThroughTheBus:
    """Tracing in buses built from a DeclarativeContainer with an in-memory exporter."""

    async def test_one_span_per_dispatch_and_error_on_failure(self) -> None:
        """Three dispatches give three spans; only the one that failed unexpectedly is ERROR."""
        container = ObservedContainer()
        commands, queries = container.command_bus(), container.query_bus()
        with capture_logs():
            ok = await commands.execute(Register("a@example.com", "pw"))
            failed = await commands.execute(Register("boom@example.com", "pw"))
            missing = await queries.execute(FindUser("nobody@example.com"))
        spans = container.span_exporter().get_finished_spans()
        assert [s.attributes["cqrskit.operation_id"] for s in spans if s.attributes] == [
            ok.operation_id,
            failed.operation_id,
            missing.operation_id,
        ]
        assert [s.status.status_code for s in spans] == [StatusCode.UNSET, StatusCode.ERROR, StatusCode.UNSET]
        assert spans[1].attributes is not None
        assert spans[1].attributes["error.type"] == "RuntimeError"
        assert spans[2].attributes is not None
        assert spans[2].attributes["cqrskit.status"] == "not_found"
