"""The behaviours that run around handlers, configured in your container and listed outermost first.

Canonical order, outermost first: Tracing, Logging, Metrics, Audit, Timeout, Authorization, Validation,
QueryCache or CacheInvalidation, Retry, Transaction, Idempotency, handler.
"""

from typing import TYPE_CHECKING

from cqrskit._lazy import lazy_exports
from cqrskit.behaviours.audit import Audit, AuditRecord, StructlogAuditSink
from cqrskit.behaviours.authorization import (
    DENY,
    Authenticated,
    Authorization,
    AuthorizationRule,
    Public,
    RequirePermissions,
)
from cqrskit.behaviours.cache_invalidation import CacheInvalidation
from cqrskit.behaviours.log import Logging
from cqrskit.behaviours.metrics import Metrics
from cqrskit.behaviours.query_cache import CachePolicy, QueryCache
from cqrskit.behaviours.retry import Retry, RetryPolicy, is_transient
from cqrskit.behaviours.timeout import Timeout
from cqrskit.behaviours.tracing import Tracing
from cqrskit.behaviours.validation import Validation

if TYPE_CHECKING:
    from cqrskit.behaviours.idempotency import Idempotency
    from cqrskit.sqlalchemy import Transaction

__all__ = [
    "DENY",
    "Audit",
    "AuditRecord",
    "Authenticated",
    "Authorization",
    "AuthorizationRule",
    "CacheInvalidation",
    "CachePolicy",
    "Idempotency",
    "Logging",
    "Metrics",
    "Public",
    "QueryCache",
    "RequirePermissions",
    "Retry",
    "RetryPolicy",
    "StructlogAuditSink",
    "Timeout",
    "Tracing",
    "Transaction",
    "Validation",
    "is_transient",
]

# Behaviours that need an optional extra are imported on first use, so this package imports without it.
_LAZY = {
    "Transaction": "cqrskit.sqlalchemy",
    "Idempotency": "cqrskit.behaviours.idempotency",
}


__getattr__ = lazy_exports(__name__, _LAZY)
