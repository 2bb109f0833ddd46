"""The behaviours that run around handlers, configured in your container and listed outermost first.

Canonical order, outermost first: Tracing, Logging, Metrics, Audit, Timeout, Authorization, Validation,
QueryCache or CacheInvalidation, Retry, Transaction, Idempotency, handler.
"""

from cqrskit.behaviours.retry import Retry, RetryPolicy, is_transient
from cqrskit.behaviours.timeout import Timeout

__all__ = [
    "Retry",
    "RetryPolicy",
    "Timeout",
    "is_transient",
]
