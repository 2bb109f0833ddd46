from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from cqrskit import Context, OperationStatus
from cqrskit._outcome import INTERNAL_ERROR
from cqrskit.errors import DETAIL
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
        """Tracing, Metrics and Audit record the type; the traceback is logged once, by Logging or the bus."""
        container = container_type()
        with capture_logs() as logs:
            result = await container.command_bus().execute(Register("boom@example.com", "pw"), Context())
        assert result.status is OperationStatus.FAILED
        assert dict(result.errors) == {DETAIL: INTERNAL_ERROR}
        (logged,) = with_traceback(logs)
        assert isinstance(logged["exc_info"], RuntimeError)
        assert logged["operation_id"] == result.operation_id
        expected_event = "dispatch_completed" if container_type is ObservedContainer else "dispatch_failed"
        assert logged["event"] == expected_event

        (span,) = container.span_exporter().get_finished_spans()
        assert span.attributes is not None
        assert span.attributes["error.type"] == "RuntimeError"
        labels = {"message_type": "Register", "status": "failed", "error_type": "RuntimeError"}
        assert container.registry().get_sample_value("cqrskit_dispatches_total", labels) == 1
        (record,) = container.audit_sink().records
        assert (record.status, record.error_type) == (OperationStatus.FAILED, "RuntimeError")

    async def test_an_expected_error_is_logged_without_a_traceback(self) -> None:
        """A ConflictError raised by the handler becomes CONFLICT; nobody logs a traceback for it."""
        container = ObservedContainer()
        with capture_logs() as logs:
            result = await container.command_bus().execute(Register("taken@example.com", "pw"))
        assert result.status is OperationStatus.CONFLICT
        assert dict(result.errors) == {DETAIL: "that email is taken"}
        assert with_traceback(logs) == []
        (record,) = container.audit_sink().records
        assert (record.status, record.error_type) == (OperationStatus.CONFLICT, "ConflictError")
