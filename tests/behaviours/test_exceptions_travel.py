"""Exceptions travel up through the behaviours and become one Result, with one logged traceback."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from structlog.testing import capture_logs

from cqrskit import CallNext, Command, CommandBus, Context, OperationStatus, Result
from cqrskit.behaviours import Logging
from tests.behaviours.observed_app import ObservedContainer, Register, UnloggedContainer


def with_traceback(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in logs if event.get("exc_info")]


class TestExceptionsTravelUp:
    """An exception passes up through every behaviour and becomes a Result once, at the bus."""

    @pytest.mark.parametrize(
        "container_type", [ObservedContainer, UnloggedContainer], ids=["with Logging", "without Logging"]
    )
    async def test_an_unexpected_error_becomes_one_failed_result_and_one_traceback(
        self, container_type: type
    ) -> None:
        """Tracing, Metrics and Audit record the type; one traceback; one operation id everywhere."""
        container = container_type()
        with capture_logs() as logs:
            result = await container.command_bus().execute(Register("boom@example.com", "pw"), Context())
        assert result.status is OperationStatus.FAILED
        assert list(result.errors) == ["detail"]
        assert result.errors["detail"].startswith("an internal error occurred")
        (logged,) = with_traceback(logs)
        assert isinstance(logged["exc_info"], RuntimeError)
        assert logged["operation_id"] == result.operation_id
        expected_event = "dispatch_completed" if container_type is ObservedContainer else "dispatch_failed"
        assert logged["event"] == expected_event

        (span,) = container.span_exporter().get_finished_spans()
        assert span.attributes is not None
        assert span.attributes["error.type"] == "RuntimeError"
        assert span.attributes["cqrskit.operation_id"] == result.operation_id
        labels = {"message_type": "Register", "status": "failed", "error_type": "RuntimeError"}
        assert container.registry().get_sample_value("cqrskit_dispatches_total", labels) == 1
        (record,) = container.audit_sink().records
        assert (record.status, record.error_type) == (OperationStatus.FAILED, "RuntimeError")
        assert record.operation_id == result.operation_id

    async def test_an_expected_error_is_logged_without_a_traceback(self) -> None:
        """A ConflictError raised by the handler becomes CONFLICT; nobody logs a traceback for it."""
        container = ObservedContainer()
        with capture_logs() as logs:
            result = await container.command_bus().execute(Register("taken@example.com", "pw"))
        assert result.status is OperationStatus.CONFLICT
        assert dict(result.errors) == {"detail": "that email is taken"}
        assert with_traceback(logs) == []
        (record,) = container.audit_sink().records
        assert (record.status, record.error_type) == (OperationStatus.CONFLICT, "ConflictError")

    async def test_an_error_raised_outside_logging_is_still_logged_once(self) -> None:
        """A behaviour listed before Logging that raises: Logging never saw it, so the bus logs it."""

        async def broken(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
            raise RuntimeError("outside Logging")

        bus = CommandBus({Ping: PingHandler()}, [broken, Logging()])
        with capture_logs() as logs:
            result = await bus.execute(Ping())
        assert result.status is OperationStatus.FAILED
        (logged,) = with_traceback(logs)
        assert logged["event"] == "dispatch_failed"
        assert logged["operation_id"] == result.operation_id
        assert str(logged["exc_info"]) == "outside Logging"

    async def test_an_error_from_inside_logging_is_logged_by_logging_only(self) -> None:
        """The handler's error passes up through Logging and a behaviour outside it: one traceback."""

        async def outside(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
            return await call_next(message, context)

        bus = CommandBus({Ping: PingHandler(RuntimeError("in the handler"))}, [outside, Logging()])
        with capture_logs() as logs:
            result = await bus.execute(Ping())
        assert result.status is OperationStatus.FAILED
        (logged,) = with_traceback(logs)
        assert logged["event"] == "dispatch_completed"
        assert logged["operation_id"] == result.operation_id

    async def test_one_exception_object_raised_by_two_dispatches_is_judged_per_dispatch(self) -> None:
        """An exception object Logging logged in one dispatch is logged by a bus without Logging later."""
        error = RuntimeError("raised twice")
        logged_bus = CommandBus({Ping: PingHandler(error)}, [Logging()])
        plain_bus = CommandBus({Ping: PingHandler(error)})
        with capture_logs() as logs:
            first = await logged_bus.execute(Ping())
            second = await plain_bus.execute(Ping())
        assert [(e["event"], e["operation_id"]) for e in with_traceback(logs)] == [
            ("dispatch_completed", first.operation_id),
            ("dispatch_failed", second.operation_id),
        ]


@attrs.frozen
class Ping(Command[str]):
    """A command for the ordering tests."""


class PingHandler:
    """Returns "pong", or raises the error it was given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    async def handle(self, command: Ping, context: Context) -> str:
        if self.error is not None:
            raise self.error
        return "pong"
