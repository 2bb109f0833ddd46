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
    FAILED = "failed"
