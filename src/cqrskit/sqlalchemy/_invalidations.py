"""`SqlInvalidationJournal`: cache invalidations recorded in the command's transaction until applied."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Collection, Sequence

import sqlalchemy as sa

from cqrskit.sqlalchemy._database import Database
from cqrskit.sqlalchemy._sqlite import BEGIN_OPTION

__all__ = ["SqlInvalidationJournal"]


@functools.cache
def _table(schema: str | None) -> sa.Table:
    return sa.Table(
        "cqrskit_cache_invalidations",
        sa.MetaData(schema=schema),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tag_keys", sa.Text(), nullable=False),  # a JSON list of the tag keys to bump
        sa.Column("created_at", sa.Float(), nullable=False, index=True),
    )


class SqlInvalidationJournal:
    """A `cqrskit.caching.InvalidationJournal` in a table of your database, ``cqrskit_cache_invalidations``.

    Give it to `CacheInvalidation` (``journal=``) and create its table once with `create_tables`
    (in `schema` on PostgreSQL). Inside a command's transaction a record is part of that transaction;
    records are deleted once applied, so the table holds only what is still to be applied.
    """

    def __init__(self, database: Database, *, schema: str | None = None) -> None:
        self._database = database
        self._schema = schema
        self._table = _table(schema)

    async def create_tables(self) -> None:
        """Create the journal's table (and `schema` on PostgreSQL) unless it exists."""
        async with self._database.engine.begin() as connection:
            if self._schema is not None and connection.dialect.name == "postgresql":
                await connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"'))
            await connection.run_sync(self._table.metadata.create_all)

    async def record(self, tag_keys: Sequence[str]) -> str:
        """Insert a record of `tag_keys`: in the open transaction, else in one of its own; return its id."""
        record_id = uuid.uuid4().hex
        statement = sa.insert(self._table).values(
            id=record_id, tag_keys=json.dumps(list(tag_keys)), created_at=time.time()
        )
        if self._database.in_transaction():
            await self._database.session.execute(statement)
        else:
            async with self._database.transaction() as session:
                await session.execute(statement)
        return record_id

    async def applied(self, record_ids: Collection[str]) -> None:
        """Delete the records `record_ids`, in a transaction of their own."""
        if not record_ids:
            return
        async with self._database.engine.begin() as connection:  # not the command's: it has committed
            await connection.execute(sa.delete(self._table).where(self._table.c.id.in_(list(record_ids))))

    async def pending(self, limit: int) -> Sequence[tuple[str, Sequence[str]]]:
        """Return up to `limit` committed records, oldest first, as (id, tag keys)."""
        query = (
            sa.select(self._table.c.id, self._table.c.tag_keys)
            .order_by(self._table.c.created_at)
            .limit(limit)
        )
        # The primary (a replica may lag); on SQLite a deferred BEGIN, so polling never queues writers.
        engine = self._database.engine.execution_options(**{BEGIN_OPTION: "DEFERRED"})
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [(row.id, tuple(json.loads(row.tag_keys))) for row in rows]

    def __repr__(self) -> str:
        return f"SqlInvalidationJournal(schema={self._schema!r})"
