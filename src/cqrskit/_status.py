"""`OperationStatus`: how a dispatch ended."""

from __future__ import annotations

import enum

__all__ = ["OperationStatus"]


class OperationStatus(enum.StrEnum):
    """How a dispatch ended."""

    SUCCESS = "success"
    VALIDATION_ERROR = "validation_error"
    UNAUTHENTICATED = "unauthenticated"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    """A dependency (the database, a broker, a cache the operation needs) is down or unreachable: try
    again later. Distinct from FAILED, which is a bug."""
    FAILED = "failed"
