"""`InvalidationJournal`: the port through which cache invalidations are recorded until they are applied."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

__all__ = ["InvalidationJournal"]


class InvalidationJournal(Protocol):
    """Where `CacheInvalidation` records the tag keys a command must bump, so none is ever dropped.

    `cqrskit.sqlalchemy.SqlInvalidationJournal` implements it with a table in your database. A
    record is written in the command's own transaction (so it exists exactly when the command
    committed) and deleted once its tags were bumped; the records left over (the cache was down or
    hung, or the process died before it could apply them) are applied by
    `CacheInvalidation.run` in any process that shares the database.
    """

    async def record(self, tag_keys: Sequence[str]) -> str:
        """Write one record of `tag_keys` and return its id.

        Inside an open transaction on the journal's database the record is part of it (it commits or
        rolls back with the command); with none open it is written in a transaction of its own.
        """
        ...

    async def applied(self, record_ids: Collection[str]) -> None:
        """Forget the records `record_ids`: their tags were bumped."""
        ...

    async def pending(self, limit: int) -> Sequence[tuple[str, Sequence[str]]]:
        """Return up to `limit` committed records not yet applied, oldest first, as (id, tag keys)."""
        ...
