"""Cross-cutting behaviours you list in a bus's ``behaviours``, outermost first.

Canonical order, outermost first: Tracing, Logging, Metrics, Audit, Timeout, Authorization, Validation,
QueryCache or CacheInvalidation, Retry, Transaction, Idempotency, handler.
"""

from cqrskit.behaviours.audit import Audit, AuditRecord, StructlogAuditSink
from cqrskit.behaviours.log import Logging
from cqrskit.behaviours.metrics import Metrics
from cqrskit.behaviours.tracing import Tracing

__all__ = [
    "Audit",
    "AuditRecord",
    "Logging",
    "Metrics",
    "StructlogAuditSink",
    "Tracing",
]
