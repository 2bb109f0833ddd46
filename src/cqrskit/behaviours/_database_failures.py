"""Telling a transient failure (worth running the whole dispatch again) from any other, by duck typing.

Nothing here imports SQLAlchemy or a database driver: the checks read attributes those libraries put
on their exceptions (``sqlstate``, ``pgcode``, ``orig``, ``sqlite_errorcode``, ``connection_invalidated``)
and walk the chain of causes, so one classifier serves SQLAlchemy, asyncpg, psycopg and sqlite3 alike.
"""

from __future__ import annotations

import asyncio
import errno

from cqrskit._errors import CqrsKitError, DomainError
from cqrskit._results import ResultError
from cqrskit._status import OperationStatus

__all__ = ["CommitOutcomeUnknownError", "is_transient"]

_RETRYABLE_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "57P01",  # admin_shutdown: the server ended the session (a restart, a failover)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: the server is starting up
    }
)
_CONNECTION_SQLSTATE_CLASS = "08"  # connection_exception and its subclasses
_SQLSTATE_ATTRIBUTES = ("sqlstate", "pgcode", "code")
_SQLSTATE_LENGTH = 5
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_LOCK_MESSAGES = ("database is locked", "database table is locked")
_CONNECTION_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "EPIPE",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "ENOTCONN",
    )
    if hasattr(errno, name)
)
_CONNECTION_ERROR_NAMES = frozenset({"ConnectionDoesNotExistError"})  # asyncpg, matched by class name
_CHAIN_LIMIT = 16  # exceptions looked at per classification: chains are short, cycles are possible


class CommitOutcomeUnknownError(CqrsKitError):
    """The connection was lost while COMMIT was in flight: the command may or may not have committed.

    `Transaction` raises it with the original error as ``__cause__``. `Retry` never retries it,
    whatever its cause, because running the command again could apply it twice; the bus turns it into
    FAILED. Check the outcome (or rely on `Idempotency`) before you ask again.
    """


def is_transient(exc: BaseException) -> bool:
    """Return True when `exc` is a failure that running the whole dispatch again may cure.

    It looks at `exc`, its ``orig`` (SQLAlchemy's wrapped driver error) and its ``__cause__`` and
    ``__context__`` chain (at most 16 exceptions) for:

    - SQLSTATE 40001 (serialization failure) or 40P01 (deadlock), class 08 (connection exception) or
      57P01-57P03 (server shutting down or starting), in a ``sqlstate``, ``pgcode`` or ``code``
      attribute;
    - SQLite busy or locked: ``sqlite_errorcode`` 5 or 6 (extended codes included), or a ``sqlite3``
      error saying "database is locked" / "database table is locked";
    - a connection lost before COMMIT: `ConnectionError`, an `OSError` with a connection errno,
      asyncpg's ``ConnectionDoesNotExistError``, or SQLAlchemy's ``connection_invalidated=True``.

    It is False whenever the chain holds a `CommitOutcomeUnknownError` (the connection dropped during
    COMMIT, so the command may have committed) or a cancellation, and for an expected outcome a handler
    raised (a `DomainError` such as `ConflictError`), whatever caused it: name such a type in
    `RetryPolicy.retry_on` to retry it. A `ResultError` (a handler unwrapped a nested command's failed
    Result) is transient when that nested dispatch FAILED on a transient error, so the outermost
    `Retry` runs the whole transaction again. This is `Retry`'s default classifier.
    """
    if isinstance(exc, ResultError):
        # A handler unwrapped a nested command's failed Result: transient when the nested dispatch
        # FAILED on something transient (the Result keeps its cause, and unwrap chains it).
        cause = exc.__cause__
        return exc.result.status is OperationStatus.FAILED and cause is not None and is_transient(cause)
    if isinstance(exc, DomainError):
        return False
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    found = False
    while pending and len(seen) < _CHAIN_LIMIT:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (CommitOutcomeUnknownError, asyncio.CancelledError)):
            return False
        if not found:
            found = _looks_transient(current)
        linked = (getattr(current, "orig", None), current.__cause__, current.__context__)
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return found


def _looks_transient(exc: BaseException) -> bool:
    """Judge one exception on its own, without its chain."""
    return _has_transient_sqlstate(exc) or _is_sqlite_busy(exc) or _is_lost_connection(exc)


def _has_transient_sqlstate(exc: BaseException) -> bool:
    for attribute in _SQLSTATE_ATTRIBUTES:
        code = getattr(exc, attribute, None)
        if (
            isinstance(code, str)
            and len(code) == _SQLSTATE_LENGTH
            and (code in _RETRYABLE_SQLSTATES or code.startswith(_CONNECTION_SQLSTATE_CLASS))
        ):
            return True
    return False


def _is_sqlite_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)  # the primary code of an extended one
    return type(exc).__module__ == "sqlite3" and any(text in str(exc) for text in _SQLITE_LOCK_MESSAGES)


def _is_lost_connection(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError):
        return True
    if isinstance(exc, OSError) and exc.errno in _CONNECTION_ERRNOS:
        return True
    if getattr(exc, "connection_invalidated", False) is True:
        return True
    return any(cls.__name__ in _CONNECTION_ERROR_NAMES for cls in type(exc).__mro__)
