"""What a database failure means, read by duck typing: transient, connection lost, unique violation, bad data.

`Retry` (through `is_transient`) and the SQLAlchemy `Transaction` both classify failures here, so the
two can never disagree on what a lost connection or a serialization failure looks like. Nothing here
imports SQLAlchemy or a database driver: the checks read attributes those libraries put on their
exceptions (``sqlstate``, ``pgcode``, ``code``, ``orig``, ``sqlite_errorcode``,
``connection_invalidated``) and walk the chain of causes once (`causes`), so one classifier serves
SQLAlchemy, asyncpg, psycopg and sqlite3 alike. SQLAlchemy wraps the driver's exception
(``DBAPIError.orig``) and its asyncio adapters wrap it once more (the asyncpg error is the adapter
error's ``__cause__``), which is why every check looks at the whole chain.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterator

from cqrskit._errors import DomainError, UnavailableError
from cqrskit._results import ResultError
from cqrskit._status import OperationStatus

__all__ = [
    "CommitOutcomeUnknownError",
    "causes",
    "is_connection_lost",
    "is_data_error",
    "is_transient",
    "is_unique_violation",
    "is_unreachable",
]

_CHAIN_LIMIT = 16  # exceptions looked at per classification: chains are short, cycles are possible
_SQLSTATE_ATTRIBUTES = ("sqlstate", "pgcode", "code")  # asyncpg and psycopg 3, psycopg2, others
_SQLSTATE_LENGTH = 5  # tells an SQLSTATE from SQLAlchemy's own four-character ``code``

_SERIALIZATION_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
# Class 08 is "connection exception"; 57P01-57P03 are the server ending the session (a restart, a
# failover, pg_terminate_backend), crashing, or still starting up.
_LOST_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03")
_UNIQUE_SQLSTATE = "23505"
_DATA_SQLSTATE_CLASS = "22"  # data_exception: out of range, too long, bad encoding, division by zero

_RETRIED_STATUSES = frozenset({OperationStatus.FAILED, OperationStatus.UNAVAILABLE})

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_LOCK_MESSAGES = ("database is locked", "database table is locked")
# SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY (extended result codes).
_SQLITE_UNIQUE_CODES = frozenset({2067, 1555})

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
_LOST_CONNECTION_NAMES = frozenset({"ConnectionDoesNotExistError"})  # asyncpg, matched by class name
# At COMMIT, these also mean the reply never came (asyncpg's and the DB-API's InterfaceError for a
# closed connection, asyncpg's ConnectionFailureError), so the outcome is unknown.
_NO_REPLY_NAMES = frozenset({"InterfaceError", "ConnectionFailureError"})
# PEP 249 names the error for "problems with the processed data" DataError; asyncpg raises one of
# that name when it cannot encode a parameter.
_DATA_ERROR_NAMES = frozenset({"DataError"})
# sqlite3 raises plain OverflowError / UnicodeEncodeError when it cannot bind a parameter; we count
# them only when raised inside one of these packages, not when a handler's own code raises them.
_DRIVER_PACKAGES = frozenset({"sqlite3", "aiosqlite", "sqlalchemy", "asyncpg", "psycopg", "psycopg2"})


class CommitOutcomeUnknownError(UnavailableError):
    """The connection was lost while COMMIT was in flight: the command may or may not have committed.

    `Transaction` raises it with the original error as ``__cause__``. `Retry` never retries it,
    whatever its cause, because running the command again could apply it twice; the bus turns it into
    UNAVAILABLE (HTTP 503) with its operation id, and its message says the outcome is unknown. Check
    the outcome (or rely on `Idempotency`) before you ask again.
    """


def causes(exc: BaseException) -> Iterator[BaseException]:
    """Yield `exc` and what it wraps (``orig``, ``__cause__``, ``__context__``), each once, 16 at most."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < _CHAIN_LIMIT:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = (current.__context__, current.__cause__, getattr(current, "orig", None))
        pending.extend(item for item in linked if isinstance(item, BaseException))  # orig comes first


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
      asyncpg's ``ConnectionDoesNotExistError``, SQLAlchemy's ``connection_invalidated=True``, or a host
      name that does not resolve.

    An `UnavailableError` (which `Transaction` and `Database.read_session` raise from a lost
    connection) is transient when its cause is. It is False whenever the chain holds a
    `CommitOutcomeUnknownError` (the connection dropped during
    COMMIT, so the command may have committed) or a cancellation, and for an expected outcome a handler
    raised (a `DomainError` such as `ConflictError`), whatever caused it: name such a type in
    `RetryPolicy.retry_on` to retry it. A `ResultError` (a handler unwrapped a nested command's failed
    Result) is transient when that nested dispatch FAILED on a transient error, so the outermost
    `Retry` runs the whole transaction again. This is `Retry`'s default classifier.
    """
    if isinstance(exc, ResultError):
        # A handler unwrapped a nested command's failed Result: transient when the nested dispatch
        # FAILED (or was UNAVAILABLE) on something transient (the Result keeps its cause, and unwrap
        # chains it).
        cause = exc.__cause__
        return exc.result.status in _RETRIED_STATUSES and cause is not None and is_transient(cause)
    if isinstance(exc, UnavailableError) and not isinstance(exc, CommitOutcomeUnknownError):
        # `Transaction` and `Database.read_session` raise it for a lost connection, from the driver's
        # error: as transient as that error.
        cause = exc.__cause__
        return cause is not None and is_transient(cause)
    if isinstance(exc, DomainError):
        return False
    found = False
    for each in causes(exc):
        if isinstance(each, (CommitOutcomeUnknownError, asyncio.CancelledError)):
            return False
        found = found or _is_serialization_failure(each) or _is_sqlite_busy(each) or _is_lost_connection(each)
    return found


def is_connection_lost(exc: BaseException) -> bool:
    """Tell whether `exc` says the connection broke or the reply never came (not that the server refused).

    `Transaction` asks this of a failed COMMIT: such a commit may or may not have been applied. It is
    everything `is_transient` calls a lost connection, plus a `TimeoutError` and an ``InterfaceError``
    or ``ConnectionFailureError`` (by class name), which at COMMIT mean no answer came back.
    """
    return any(
        _is_lost_connection(each) or isinstance(each, TimeoutError) or _named(each, _NO_REPLY_NAMES)
        for each in causes(exc)
    )


def is_unreachable(exc: BaseException) -> bool:
    """Tell whether `exc` says the database could not be reached or the connection to it broke.

    Everything `is_transient` calls a lost connection: a `ConnectionError`, an `OSError` with a
    connection errno, SQLSTATE class 08 or 57P01-57P03, asyncpg's ``ConnectionDoesNotExistError``,
    SQLAlchemy's ``connection_invalidated``, a host name that does not resolve, and asyncio's
    "Multiple exceptions" error when every address of the host refused the connection.
    """
    return any(_is_lost_connection(each) for each in causes(exc))


def is_unique_violation(exc: BaseException) -> bool:
    """Tell whether `exc` reports a unique or primary-key constraint violation.

    PostgreSQL's SQLSTATE 23505, or SQLite's extended codes 2067 (unique) and 1555 (primary key).
    """
    return any(
        _UNIQUE_SQLSTATE in _sqlstates(each)
        or getattr(each, "sqlite_errorcode", None) in _SQLITE_UNIQUE_CODES
        for each in causes(exc)
    )


def is_data_error(exc: BaseException) -> bool:
    """Tell whether the database (or its driver) refused a value it was given, not the statement.

    PostgreSQL's SQLSTATE class 22 "data exception" (a number out of range, a string too long for its
    column, a byte the encoding cannot hold, a division by zero), a PEP 249 ``DataError`` (by class
    name; asyncpg raises one when it cannot encode a parameter), and the `OverflowError` or
    `UnicodeEncodeError` sqlite3 raises when it cannot bind a parameter ("Python int too large to
    convert to SQLite INTEGER", a lone surrogate in a string) when raised inside the driver, so the
    same error raised by your own code does not count.
    """
    return any(
        any(code.startswith(_DATA_SQLSTATE_CLASS) for code in _sqlstates(each))
        or _named(each, _DATA_ERROR_NAMES)
        or (isinstance(each, (OverflowError, UnicodeEncodeError)) and _raised_in_driver(each))
        for each in causes(exc)
    )


def _sqlstates(exc: BaseException) -> tuple[str, ...]:
    """Return the SQLSTATEs `exc` itself carries (not its chain's), in any attribute drivers use."""
    codes = (getattr(exc, attribute, None) for attribute in _SQLSTATE_ATTRIBUTES)
    return tuple(code for code in codes if isinstance(code, str) and len(code) == _SQLSTATE_LENGTH)


def _named(exc: BaseException, names: frozenset[str]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _is_serialization_failure(exc: BaseException) -> bool:
    return any(code in _SERIALIZATION_SQLSTATES for code in _sqlstates(exc))


def _is_sqlite_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)  # the primary code of an extended one
    return type(exc).__module__ == "sqlite3" and any(text in str(exc) for text in _SQLITE_LOCK_MESSAGES)


def _is_lost_connection(exc: BaseException) -> bool:
    """Tell whether the connection to the server broke, judging `exc` alone (not its chain)."""
    if isinstance(exc, ConnectionError):
        return True
    if isinstance(exc, OSError) and exc.errno in _CONNECTION_ERRNOS:
        return True
    if getattr(exc, "connection_invalidated", False) is True:
        return True
    if _is_unresolved(exc):
        return True
    if any(code.startswith(_LOST_SQLSTATE_PREFIXES) for code in _sqlstates(exc)):
        return True
    return _named(exc, _LOST_CONNECTION_NAMES)


def _is_unresolved(exc: BaseException) -> bool:
    if isinstance(exc, socket.gaierror):
        return True
    # asyncio's error when every address of a host refused: an OSError without an errno.
    return type(exc) is OSError and exc.errno is None and str(exc).startswith("Multiple exceptions")


def _raised_in_driver(exc: BaseException) -> bool:
    """Tell whether the innermost Python frame `exc` passed through belongs to a database package."""
    traceback = exc.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    module = traceback.tb_frame.f_globals.get("__name__")
    return isinstance(module, str) and module.partition(".")[0] in _DRIVER_PACKAGES
