"""Typing checks for the observability behaviours (run by mypy --strict and pyright, never executed)."""

from __future__ import annotations

from typing import Any, assert_type

from cqrskit import Behaviour, OperationStatus
from cqrskit.behaviours import Audit, AuditRecord, AuditSink, Logging, Metrics, StructlogAuditSink, Tracing


class TableSink:
    async def write(self, record: AuditRecord) -> None:
        assert_type(record.status, OperationStatus)
        assert_type(record.fields["email"], Any)


sink: AuditSink = TableSink()
shipped: AuditSink = StructlogAuditSink()

behaviours: list[Behaviour] = [
    Tracing(),
    Tracing(record_fields=True),
    Logging(),
    Metrics(),
    Audit(sink, message_types=[AuditRecord]),
]
