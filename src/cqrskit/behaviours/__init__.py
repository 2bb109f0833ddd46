"""The behaviours that need no integration, configured in your container and listed outermost first.

The canonical order is declared once, in code (`cqrskit.Stage`), and checked when a bus is built.
Behaviours that belong to an integration live with it: `QueryCache` and `CacheInvalidation` in
`cqrskit.caching`, `Transaction` in `cqrskit.sqlalchemy`, `Idempotency` in `cqrskit.events`.
"""

from cqrskit.behaviours._audit import Audit, AuditRecord, AuditSink, StructlogAuditSink
from cqrskit.behaviours._authorization import Authorization
from cqrskit.behaviours._authorization_rules import (
    DENY,
    Authenticated,
    AuthorizationRule,
    Public,
    RequirePermissions,
    RequireSameTenant,
)
from cqrskit.behaviours._database_failures import is_transient
from cqrskit.behaviours._logging import Logging
from cqrskit.behaviours._metrics import Metrics
from cqrskit.behaviours._retry import Retry, RetryPolicy
from cqrskit.behaviours._timeout import Timeout
from cqrskit.behaviours._tracing import Tracing
from cqrskit.behaviours._validation import Validation

__all__ = [
    "DENY",
    "Audit",
    "AuditRecord",
    "AuditSink",
    "Authenticated",
    "Authorization",
    "AuthorizationRule",
    "Logging",
    "Metrics",
    "Public",
    "RequirePermissions",
    "RequireSameTenant",
    "Retry",
    "RetryPolicy",
    "StructlogAuditSink",
    "Timeout",
    "Tracing",
    "Validation",
    "is_transient",
]
