"""Binding a dispatch's ids in structlog's context-local context, and naming a behaviour's logger."""

from __future__ import annotations

import functools
from typing import Any, Final

import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars

from cqrskit._logs import LibraryLogger

__all__ = ["KEYS", "DispatchIds", "is_lazy_logger", "logger_label"]

KEYS: Final = ("operation_id", "correlation_id", "causation_id", "message_type", "principal_id")


@functools.cache
def _lazy_proxy_type() -> type:
    # structlog exports no name for the lazy proxy `get_logger` returns; its type is taken from one.
    return type(structlog.get_logger())


def is_lazy_logger(logger: object) -> bool:
    """Return True for a proxy resolved on each use: ``structlog.get_logger()``'s, or cqrskit's own."""
    return isinstance(logger, (_lazy_proxy_type(), LibraryLogger))


def logger_label(logger: object, default_name: str | None = None) -> str:
    """Return how a behaviour names its logger in a repr or `describe`: short enough to read.

    Pass `default_name` when the behaviour made the logger itself with ``structlog.get_logger(name)``.
    Another structlog lazy proxy has a long repr that says nothing useful, so it is named by its kind.
    """
    if default_name is not None:
        return f"structlog.get_logger({default_name!r})"
    if is_lazy_logger(logger):
        return "structlog.get_logger(...)"
    return repr(logger)


class DispatchIds:
    """Sets the dispatch ids with `structlog.contextvars` and puts the previous values back.

    The five of `KEYS` always, and ``tenant`` when the dispatch has one (a service without tenants
    logs exactly what it logged before).
    """

    __slots__ = ()

    def bind(
        self,
        operation_id: str | None,
        correlation_id: str | None,
        causation_id: str | None,
        message_type: str,
        principal_id: str | None,
        *,
        tenant: str | None = None,
    ) -> Any:
        """Bind the ids; return what `reset` needs to restore the previous values."""
        tokens = bind_contextvars(
            operation_id=operation_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
            message_type=message_type,
            principal_id=principal_id,
        )
        if tenant is None:
            return tokens
        return {**tokens, **bind_contextvars(tenant=tenant)}

    def reset(self, tokens: Any) -> None:
        """Restore the values `bind` replaced."""
        reset_contextvars(**tokens)
