"""The behaviours that run around handlers, configured in your container and listed outermost first.

Canonical order, outermost first: Tracing, Logging, Metrics, Audit, Timeout, Authorization, Validation,
QueryCache or CacheInvalidation, Retry, Transaction, Idempotency, handler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cqrskit.behaviours.retry import Retry, RetryPolicy, is_transient

if TYPE_CHECKING:
    from cqrskit.behaviours.idempotency import Idempotency

__all__ = [
    "Idempotency",
    "Retry",
    "RetryPolicy",
    "is_transient",
]

# Behaviours that need SQLAlchemy are imported on first use, so this package imports without it.
_LAZY = {
    "Idempotency": "cqrskit.behaviours.idempotency",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cqrskit.behaviours' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
