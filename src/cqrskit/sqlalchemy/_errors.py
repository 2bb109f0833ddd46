"""The errors `Database` raises about its session."""

from __future__ import annotations

from cqrskit._errors import ConfigurationError

__all__ = ["NoActiveSessionError"]


class NoActiveSessionError(ConfigurationError):
    """You asked `Database.session` for the current session, but no transaction is open in this task.

    The session exists only inside a transaction: put the `Transaction` behaviour on the command bus
    (or open one with ``async with database.transaction():``). A query handler reads through
    ``async with database.read_session() as session:`` instead.
    """
