"""A small service for the durable cache invalidation tests: things with a name, cached by id.

`Service` is what one process of an application holds: its own `Database` (on a shared SQLite file or
PostgreSQL), its own cache client, a `CacheInvalidation` with a `SqlInvalidationJournal` inside
`Transaction`, and a `QueryCache`. Two of them on one database and one cache stand for two processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import AffectedEntity, Command, CommandBus, Context, Query, QueryBus, Result
from cqrskit.behaviours import Retry
from cqrskit.caching import CacheInvalidation, CachePolicy, QueryCache
from cqrskit.sqlalchemy import Database, SqlInvalidationJournal, Transaction

THING = "thing"


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0, what: str = "") -> None:
    """Poll `check` until it is true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {within}s: {what}")
        await asyncio.sleep(0.02)


def things_table(schema: str | None) -> sa.Table:
    """The things table in `schema`."""
    return sa.Table(
        "things",
        sa.MetaData(schema=schema),
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(40), nullable=False),
    )


@attrs.frozen
class GetName(Query[str]):
    thing_id: str


@attrs.frozen
class Rename(Command[None]):
    thing_id: str
    name: str
    fail: bool = False


class GetNameHandler:
    def __init__(self, database: Database, table: sa.Table) -> None:
        self.database, self.table = database, table

    async def handle(self, query: GetName, context: Context) -> str:
        async with self.database.read_session() as session:
            name = await session.scalar(sa.select(self.table.c.name).where(self.table.c.id == query.thing_id))
        return str(name)


class RenameHandler:
    def __init__(self, database: Database, table: sa.Table) -> None:
        self.database, self.table = database, table

    async def handle(self, command: Rename, context: Context) -> Result[None]:
        await self.database.session.execute(
            sa.update(self.table).where(self.table.c.id == command.thing_id).values(name=command.name)
        )
        if command.fail:
            raise RuntimeError("the handler failed after writing")
        return Result.success(None, affected_entities=[AffectedEntity(THING, command.thing_id, "updated")])


def _tags(query: GetName) -> list[tuple[str, object]]:
    return [(THING, query.thing_id)]


class Service:
    """One process of the service: buses over `database` and `cache`, invalidations journaled."""

    def __init__(self, database: Database, cache: object, *, schema: str | None = None) -> None:
        self.database = database
        self.table = things_table(schema)
        self.journal = SqlInvalidationJournal(database, schema=schema)
        self.invalidation = CacheInvalidation(cache, journal=self.journal, retry_interval=0.5)
        self.commands = CommandBus(
            {Rename: RenameHandler(database, self.table)},
            [Retry(), Transaction(database), self.invalidation],
        )
        self.queries = QueryBus(
            {GetName: GetNameHandler(database, self.table)},
            [QueryCache(cache, {GetName: CachePolicy(ttl=300, tags=_tags)})],
        )

    async def create_tables(self) -> None:
        """Create the things table (with one thing, "1", named "old") and the journal's table."""
        await self.journal.create_tables()
        async with self.database.engine.begin() as connection:
            await connection.run_sync(self.table.metadata.create_all)
            await connection.execute(sa.insert(self.table).values(id="1", name="old"))

    async def name(self, thing_id: str = "1") -> tuple[str, bool]:
        """The thing's name as the query bus answers it, and whether it came from the cache."""
        result = await self.queries.execute(GetName(thing_id))
        info = result.cache_info
        return result.unwrap(), bool(info is not None and info.hit)
