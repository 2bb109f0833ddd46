"""Reading what a database error means: a unique violation, or a connection lost mid-COMMIT.

SQLAlchemy wraps the driver's exception (``DBAPIError.orig``), and the asyncio adapters wrap it once
more (the asyncpg error is the adapter error's ``__cause__``), so every check walks the whole chain.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["causes", "is_connection_lost", "is_unique_violation", "sqlstate"]

_UNIQUE_SQLSTATE = "23505"
# SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY (extended result codes).
_SQLITE_UNIQUE_CODES = frozenset({2067, 1555})
# Class 08 is "connection exception"; 57P01-57P03 are the server shutting the session down
# (pg_terminate_backend, a shutdown, a crash restart).
_LOST_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03")
_LOST_TYPE_NAMES = frozenset({"ConnectionDoesNotExistError", "InterfaceError", "ConnectionFailureError"})


def causes(exc: BaseException) -> Iterator[BaseException]:
    """Yield `exc` and everything it wraps (``orig``, ``__cause__``, ``__context__``), each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending.extend(
            (current.__context__, current.__cause__, orig if isinstance(orig, BaseException) else None)
        )


def sqlstate(exc: BaseException) -> str | None:
    """Return the PostgreSQL SQLSTATE found anywhere in `exc`'s chain, or None."""
    for cause in causes(exc):
        code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(code, str) and code:
            return code
    return None


def is_unique_violation(exc: BaseException) -> bool:
    """Tell whether `exc` reports a unique or primary-key constraint violation."""
    if sqlstate(exc) == _UNIQUE_SQLSTATE:
        return True
    return any(getattr(cause, "sqlite_errorcode", None) in _SQLITE_UNIQUE_CODES for cause in causes(exc))


def is_connection_lost(exc: BaseException) -> bool:
    """Tell whether `exc` says the connection to the server broke (not that the server refused)."""
    for cause in causes(exc):
        if getattr(cause, "connection_invalidated", False):
            return True
        code = getattr(cause, "sqlstate", None)
        if isinstance(code, str) and code.startswith(_LOST_SQLSTATE_PREFIXES):
            return True
        if isinstance(cause, ConnectionError | TimeoutError) or type(cause).__name__ in _LOST_TYPE_NAMES:
            return True
    return False
