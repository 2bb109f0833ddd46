"""What cqrskit logs of an exception: the exception itself, or, for a database error, what is safe.

A database error's text can carry the values of the row it was about: PostgreSQL's "Failing row
contains (...)" and "Key (email)=(...)" details, and SQLAlchemy's statement parameters. A password
hash or a personal detail has no place in a log, so when an exception's chain holds a database error
(read by duck typing: an SQLSTATE in ``sqlstate`` or ``pgcode``, a ``sqlite_errorcode``, or a
statement with its parameters), cqrskit logs the stack and the exception types, the SQLSTATE and the
names of the constraint, table and column, and no exception text. Every other exception is logged
with ``exc_info`` as usual.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Any

__all__ = ["database_error_summary", "loggable_exception"]

_CHAIN_LIMIT = 16
_SQLSTATE_LENGTH = 5
# Attributes drivers put on an error that name things, never values (asyncpg's names; sqlite3's).
_SAFE_ATTRIBUTES = (
    ("schema_name", "schema"),
    ("table_name", "table"),
    ("column_name", "column"),
    ("constraint_name", "constraint"),
    ("sqlite_errorname", "sqlite_error"),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield `exc` and what it was raised from or during, as a traceback prints them, 16 at most."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _CHAIN_LIMIT:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def _sqlstate(exc: BaseException) -> str | None:
    for attribute in ("sqlstate", "pgcode"):
        code = getattr(exc, attribute, None)
        if isinstance(code, str) and len(code) == _SQLSTATE_LENGTH:
            return code
    return None


def _is_database_error(exc: BaseException) -> bool:
    return (
        _sqlstate(exc) is not None
        or isinstance(getattr(exc, "sqlite_errorcode", None), int)
        or (hasattr(exc, "statement") and hasattr(exc, "params") and hasattr(exc, "orig"))
    )


def database_error_summary(exc: BaseException) -> dict[str, str] | None:
    """Return what is safe to log of the database error in `exc`'s chain, or None when there is none.

    The SQLSTATE and the names of the schema, table, column and constraint, when the driver gives
    them (``{"sqlstate": "23514", "table": "users", "constraint": "users_age_check"}``).
    """
    found = False
    summary: dict[str, str] = {}
    for each in _chain(exc):
        for linked in (each, getattr(each, "orig", None)):
            if not isinstance(linked, BaseException) or not _is_database_error(linked):
                continue
            found = True
            code = _sqlstate(linked)
            if code is not None:
                summary.setdefault("sqlstate", code)
            for attribute, key in _SAFE_ATTRIBUTES:
                value = getattr(linked, attribute, None)
                if isinstance(value, str) and value:
                    summary.setdefault(key, value)
    return summary if found else None


def _stack_without_text(exc: BaseException) -> str:
    """Format `exc`'s chain as a traceback does, with each exception's type but not its text."""
    parts: list[str] = []
    for each in reversed(list(_chain(exc))):
        if parts:
            parts.append("\nThe above exception led to the following one:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_list(traceback.extract_tb(each.__traceback__)))
        kind = type(each)
        parts.append(f"{kind.__module__}.{kind.__qualname__}: (text withheld: database error)\n")
    return "".join(parts)


def loggable_exception(exc: BaseException) -> dict[str, Any]:
    """Return the log fields for `exc`: ``exc_info``, or for a database error its stack and summary.

    Pass them as keyword arguments to a structlog call. For a database error the fields are
    ``exception`` (the stack, every exception's type, no text) and ``database_error`` (see
    `database_error_summary`); otherwise ``exc_info=exc``.
    """
    summary = database_error_summary(exc)
    if summary is None:
        return {"exc_info": exc}
    return {"exception": _stack_without_text(exc), "database_error": summary}
