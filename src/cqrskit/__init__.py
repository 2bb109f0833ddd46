"""cqrskit: an async CQRS framework wired through dependency-injector.

Commands change state and queries read it, each through its own immutable bus built from explicit
handler maps and behaviour lists in a dependency-injector container. Nothing registers itself.

This package is the core: messages, `Context`, `Result`, the errors a handler raises, the buses and the
contracts a handler and a behaviour meet. Behaviours live in `cqrskit.behaviours`; each integration
(`cqrskit.caching`, `cqrskit.sqlalchemy`, `cqrskit.events`, `cqrskit.fastapi`) is a package of its own.
"""

from cqrskit._bus import CommandBus, QueryBus
from cqrskit._context import Context, Principal
from cqrskit._contracts import (
    Behaviour,
    BindableBehaviour,
    BuildWatch,
    CallNext,
    Handler,
    HandlerFactory,
    Step,
    StreamHandler,
)
from cqrskit._errors import (
    ConfigurationError,
    ConflictError,
    CqrsKitError,
    DomainError,
    HandlerNotFoundError,
    MissingExtraError,
    NotAuthenticatedError,
    NotFoundError,
    PermissionDeniedError,
    StaleOverrideError,
    UnavailableError,
    ValidationFailedError,
)
from cqrskit._messages import Command, Message, Query, StreamQuery
from cqrskit._offset_page import OffsetPage
from cqrskit._results import AffectedEntity, CacheInfo, Page, Pagination, Result, ResultError
from cqrskit._routes import merge_routes
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
from cqrskit._streams import Stream

__all__ = [
    "AffectedEntity",
    "Behaviour",
    "BindableBehaviour",
    "BuildWatch",
    "CacheInfo",
    "CallNext",
    "Command",
    "CommandBus",
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
    "NotAuthenticatedError",
    "NotFoundError",
    "OffsetPage",
    "OperationStatus",
    "Page",
    "Pagination",
    "PermissionDeniedError",
    "Principal",
    "Query",
    "QueryBus",
    "Result",
    "ResultError",
    "Stage",
    "StaleOverrideError",
    "Step",
    "Stream",
    "StreamHandler",
    "StreamQuery",
    "UnavailableError",
    "ValidationFailedError",
    "merge_routes",
]
