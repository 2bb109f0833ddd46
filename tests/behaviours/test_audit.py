from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from dependency_injector import providers
from structlog.testing import capture_logs

from cqrskit import AffectedEntity, Context, OperationStatus, Principal, Result
from cqrskit.behaviours import Audit, AuditRecord, AuditSink, StructlogAuditSink
from tests.behaviours.observed_app import (
    BrokenAuditSink,
    Connect,
    Credentials,
    FindUser,
    MemoryAuditSink,
    ObservedContainer,
    Register,
    events_named,
)

CONTEXT = Context(
    principal=Principal("alice"), correlation_id="corr-1", causation_id="cause-1", operation_id="op-1"
)


async def created(message: Any, context: Context) -> Result[Any]:
    return Result.success("7", affected_entities=[AffectedEntity("user", "7", "created")])


class TestAuditDirect:
    """Audit called with a fake call_next."""

    async def test_the_record_says_who_what_when_and_how_it_ended(self) -> None:
        """A success writes one record with the ids, redacted fields, status and affected entities."""
        sink = MemoryAuditSink()
        before = dt.datetime.now(dt.UTC)
        result = await Audit(sink)(Register("a@example.com", "hunter2"), CONTEXT, created)
        assert result.data == "7"
        (record,) = sink.records
        assert record.operation_id == "op-1"
        assert record.correlation_id == "corr-1"
        assert record.causation_id == "cause-1"
        assert record.principal_id == "alice"
        assert record.message_type == "Register"
        assert record.fields == {"email": "a@example.com", "password": "***", "display_name": "someone"}
        assert record.status is OperationStatus.SUCCESS
        assert record.affected_entities == (AffectedEntity("user", "7", "created"),)
        assert record.error_type is None
        assert record.started_at.tzinfo is dt.UTC
        assert before <= record.started_at <= dt.datetime.now(dt.UTC)
        assert record.duration_ms >= 0

    async def test_an_exception_is_audited_as_failed_and_reraised(self) -> None:
        """An unexpected exception gives a FAILED record with its type; the exception goes on up."""
        sink = MemoryAuditSink()

        async def broken(message: Any, context: Context) -> Result[Any]:
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            await Audit(sink)(FindUser("x"), CONTEXT, broken)
        (record,) = sink.records
        assert (record.status, record.error_type) == (OperationStatus.FAILED, "OSError")
        assert record.affected_entities == ()

    async def test_a_failure_result_is_audited_with_its_status(self) -> None:
        """A denied request is audited too."""
        sink = MemoryAuditSink()

        async def denied(message: Any, context: Context) -> Result[Any]:
            return Result.failure(OperationStatus.UNAUTHORIZED)

        await Audit(sink)(FindUser("x"), CONTEXT, denied)
        assert sink.records[0].status is OperationStatus.UNAUTHORIZED

    async def test_a_failing_sink_is_logged_and_the_result_returned(self) -> None:
        """A sink that raises does not fail the dispatch; the error is logged with its traceback."""
        with capture_logs() as logs:
            result = await Audit(BrokenAuditSink())(Register("a@example.com", "pw"), CONTEXT, created)
        assert result.is_success
        (event,) = events_named(logs, "audit_sink_failed")
        assert event["log_level"] == "error"
        assert event["operation_id"] == "op-1"
        assert event["error_type"] == "ConnectionError"
        assert isinstance(event["exc_info"], ConnectionError)

    async def test_a_sink_that_is_cancelled_lets_the_cancellation_through(self) -> None:
        """Cancellation while writing the record is not swallowed."""

        class CancelledSink:
            async def write(self, record: AuditRecord) -> None:
                raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await Audit(CancelledSink())(FindUser("x"), CONTEXT, created)

    async def test_a_cancelled_dispatch_is_not_audited(self) -> None:
        """A dispatch cancelled before it ended has no outcome to audit."""
        sink = MemoryAuditSink()

        async def cancelled(message: Any, context: Context) -> Result[Any]:
            raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await Audit(sink)(FindUser("x"), CONTEXT, cancelled)
        assert sink.records == []

    async def test_nested_sensitive_fields_are_redacted(self) -> None:
        """A sensitive field inside a value object is redacted in the record."""
        sink = MemoryAuditSink()
        await Audit(sink)(Connect(Credentials("alice", "s3cret")), CONTEXT, created)
        assert sink.records[0].fields == {"credentials": {"username": "alice", "secret": "***"}}

    def test_message_types_restrict_what_is_audited(self) -> None:
        """bind keeps Audit for the listed types (and their subclasses) only; describe says so."""
        audit = Audit(MemoryAuditSink(), message_types=[Register])
        assert audit.bind(Register) is not None
        assert audit.bind(FindUser) is None
        assert audit.describe(Register) == {
            "sink": "MemoryAuditSink()",
            "audited": True,
            "redacted_fields": ("password",),
        }
        assert audit.describe(FindUser)["audited"] is False
        assert repr(audit) == "Audit(sink=MemoryAuditSink(), message_types=['Register'])"

    def test_the_memory_sink_satisfies_the_protocol(self) -> None:
        """MemoryAuditSink and StructlogAuditSink are AuditSinks to a type checker and at runtime."""
        sinks: list[AuditSink] = [MemoryAuditSink(), StructlogAuditSink()]
        assert all(callable(sink.write) for sink in sinks)


class TestStructlogAuditSink:
    """The shipped structlog sink."""

    async def test_logs_the_record_as_plain_data(self) -> None:
        """The record becomes one "audit" info event whose values are plain data."""
        record = AuditRecord(
            operation_id="op-1",
            correlation_id="corr-1",
            principal_id="alice",
            message_type="Register",
            fields={"email": "a@example.com", "password": "***"},
            status=OperationStatus.SUCCESS,
            affected_entities=(AffectedEntity("user", "7", "created", ("email",)),),
            started_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            duration_ms=1.5,
        )
        with capture_logs() as logs:
            await StructlogAuditSink().write(record)
        (event,) = logs
        assert event == {
            "event": "audit",
            "log_level": "info",
            "operation_id": "op-1",
            "correlation_id": "corr-1",
            "causation_id": None,
            "principal_id": "alice",
            "message_type": "Register",
            "fields": {"email": "a@example.com", "password": "***"},
            "status": "success",
            "error_type": None,
            "affected_entities": [{"kind": "user", "id": "7", "change": "created", "fields": ("email",)}],
            "started_at": "2026-01-02T03:04:05+00:00",
            "duration_ms": 1.5,
        }


class TestAuditThroughTheBus:
    """Audit in buses built from a DeclarativeContainer."""

    async def test_commands_and_queries_are_audited_in_order(self) -> None:
        """Each dispatch writes one record carrying the caller's operation id and outcome."""
        container = ObservedContainer()
        context = Context(principal=Principal("alice"))
        with capture_logs():
            registered = await container.command_bus().execute(Register("a@example.com", "pw"), context)
            failed = await container.command_bus().execute(Register("boom@example.com", "pw"), context)
            found = await container.query_bus().execute(FindUser("a@example.com"), context)
        records = container.audit_sink().records
        assert [(r.operation_id, r.status) for r in records] == [
            (registered.operation_id, OperationStatus.SUCCESS),
            (failed.operation_id, OperationStatus.FAILED),
            (found.operation_id, OperationStatus.SUCCESS),
        ]
        assert records[0].affected_entities == registered.affected_entities
        assert records[1].error_type == "RuntimeError"
        assert {r.principal_id for r in records} == {"alice"}
        assert "pw" not in {v for r in records for v in r.fields.values()}

    async def test_a_broken_sink_never_fails_the_command(self) -> None:
        """With the audit store down the command still succeeds, and the failure is logged."""
        container = ObservedContainer()
        container.audit_sink.override(providers.Singleton(BrokenAuditSink))
        with capture_logs() as logs:
            result = await container.command_bus().execute(Register("a@example.com", "pw"))
        assert result.is_success
        assert len(events_named(logs, "audit_sink_failed")) == 1
        assert container.users() == {"a@example.com": "1"}
