"""The behaviours that run around handlers, configured in your container and listed outermost first.

Canonical order, outermost first: Tracing, Logging, Metrics, Audit, Timeout, Authorization, Validation,
QueryCache or CacheInvalidation, Retry, Transaction, Idempotency, handler.
"""

from cqrskit.behaviours.authorization import (
    DENY,
    Authenticated,
    Authorization,
    AuthorizationRule,
    Public,
    RequirePermissions,
)
from cqrskit.behaviours.retry import Retry, RetryPolicy, is_transient
from cqrskit.behaviours.timeout import Timeout
from cqrskit.behaviours.validation import Validation

__all__ = [
    "DENY",
    "Authenticated",
    "Authorization",
    "AuthorizationRule",
    "Public",
    "RequirePermissions",
    "Retry",
    "RetryPolicy",
    "Timeout",
    "Validation",
    "is_transient",
]
