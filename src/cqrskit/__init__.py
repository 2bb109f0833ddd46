"""cqrskit: an async CQRS framework wired through dependency-injector.

Commands change state and queries read it, each through its own immutable bus built from explicit
handler maps and behaviour lists in a dependency-injector container. Nothing registers itself.
"""

from cqrskit.buses import CommandBus, QueryBus
from cqrskit.context import Context, Principal
from cqrskit.errors import (
    CommitOutcomeUnknownError,
    ConfigurationError,
    ConflictError,
    CqrsKitError,
    DomainError,
    HandlerNotFoundError,
    MissingExtraError,
    NoActiveSessionError,
    NotFoundError,
    PayloadError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ResultError,
    ValidationFailedError,
)
from cqrskit.messages import Command, Message, Query
from cqrskit.protocols import AuditSink, Behaviour, CacheBackend, CallNext, Handler, HandlerFactory
from cqrskit.results import AffectedEntity, CacheInfo, OperationStatus, Page, Pagination, Result
from cqrskit.routes import merge_routes

__all__ = [
    "AffectedEntity",
    "AuditSink",
    "Behaviour",
    "CacheBackend",
    "CacheInfo",
    "CallNext",
    "Command",
    "CommandBus",
    "CommitOutcomeUnknownError",
    "ConfigurationError",
    "ConflictError",
    "Context",
    "CqrsKitError",
    "DomainError",
    "Handler",
    "HandlerFactory",
    "HandlerNotFoundError",
    "Message",
    "MissingExtraError",
    "NoActiveSessionError",
    "NotFoundError",
    "OperationStatus",
    "Page",
    "Pagination",
    "PayloadError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Principal",
    "Query",
    "QueryBus",
    "Result",
    "ResultError",
    "ValidationFailedError",
    "merge_routes",
]
