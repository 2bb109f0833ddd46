"""Tables, commands, handlers and a container the SQLAlchemy tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import attrs
from dependency_injector import containers, providers
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.orm import DeclarativeBase

from cqrskit import Command, CommandBus, ConflictError, Context, OperationStatus, Result
from cqrskit.behaviours import Retry, RetryPolicy
from cqrskit.scope import defer_until_commit
from cqrskit.sqlalchemy import Database, Transaction

metadata = MetaData()
counters = Table(
    "counters",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("value", Integer, nullable=False),
)
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(50), nullable=False, unique=True),
)


class Base(DeclarativeBase):
    """The declarative base of the ORM-mapped test tables."""


class Item(Base):
    """An ORM view of `items`, for tests that add objects to the session."""

    __table__ = items


@attrs.frozen
class Increment(Command[int]):
    """Read the counter, then write it back plus one: loses updates without BEGIN IMMEDIATE."""

    counter_id: int = 1


@attrs.frozen
class AddItem(Command[str]):
    """Insert an item; optionally fail afterwards, by raising or by returning a failure Result."""

    name: str
    then: str = "succeed"  # "succeed", "raise" or "fail"


@attrs.frozen
class AddWithNested(Command[OperationStatus]):
    """Insert `name`, then dispatch AddItem(`nested`, then=`nested_then`) and carry on whatever it returns."""

    name: str
    nested: str
    nested_then: str = "succeed"
    then: str = "succeed"


class CounterRepository:
    """Reads and writes counters through the current command's session."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def increment(self, counter_id: int) -> int:
        session = self._database.session
        value = (
            await session.execute(select(counters.c.value).where(counters.c.id == counter_id))
        ).scalar_one()
        await asyncio.sleep(0)  # let every other dispatch reach its read before this one writes
        await session.execute(update(counters).where(counters.c.id == counter_id).values(value=value + 1))
        return int(value + 1)


class IncrementHandler:
    """Increments one counter."""

    def __init__(self, counters: CounterRepository) -> None:
        self._counters = counters

    async def handle(self, command: Increment, context: Context) -> int:
        return await self._counters.increment(command.counter_id)


class AddItemHandler:
    """Inserts an item and records after-commit work in `committed`."""

    def __init__(self, database: Database, committed: list[str]) -> None:
        self._database = database
        self._committed = committed

    async def handle(self, command: AddItem, context: Context) -> str | Result[str]:
        await self._database.session.execute(insert(items).values(name=command.name))

        async def note() -> None:
            self._committed.append(command.name)

        defer_until_commit(note)
        if command.then == "raise":
            raise RuntimeError("the handler failed after writing")
        if command.then == "fail":
            return Result.failure(OperationStatus.CONFLICT, {"name": "refused after writing"})
        return command.name


class AddWithNestedHandler:
    """Inserts an item, then dispatches a nested AddItem through the same bus and ignores its failure."""

    def __init__(self, database: Database, bus: Callable[[], CommandBus], committed: list[str]) -> None:
        self._database = database
        self._bus = bus
        self._committed = committed

    async def handle(self, command: AddWithNested, context: Context) -> OperationStatus:
        await self._database.session.execute(insert(items).values(name=command.name))

        async def note() -> None:
            self._committed.append(command.name)

        defer_until_commit(note)
        nested = await self._bus().execute(
            AddItem(command.nested, command.nested_then), context=context.child()
        )
        if command.then == "raise":
            raise ConflictError("the outer handler gave up")
        return nested.status


class Container(containers.DeclarativeContainer):
    """The wiring an application would write: a Database singleton, repositories, one command bus."""

    config = providers.Configuration()
    committed = providers.Singleton(list)
    database = providers.Singleton(Database, url=config.database_url)
    counters = providers.Factory(CounterRepository, database=database)
    add_with_nested = providers.Factory(AddWithNestedHandler, database=database, committed=committed)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                Increment: providers.Factory(IncrementHandler, counters=counters),
                AddItem: providers.Factory(AddItemHandler, database=database, committed=committed),
                AddWithNested: add_with_nested,
            }
        ),
        behaviours=providers.List(
            providers.Singleton(Retry, RetryPolicy(max_attempts=5, delay=0.01)),
            providers.Singleton(Transaction, database=database),
        ),
    )


# The nested handler needs the bus it is routed on: give it the bus provider once the bus exists.
Container.add_with_nested.add_kwargs(bus=Container.command_bus.provider)


async def create_tables(database: Database) -> None:
    """Create the test tables and the one counter row."""
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(insert(counters).values(id=1, value=0))


async def item_names(database: Database) -> list[str]:
    """Every item name, sorted, read through a read session."""
    async with database.read_session() as session:
        return sorted((await session.execute(select(items.c.name))).scalars())


async def counter_value(database: Database, counter_id: int = 1) -> int:
    """The committed value of one counter."""
    async with database.read_session() as session:
        return int(
            (await session.execute(select(counters.c.value).where(counters.c.id == counter_id))).scalar_one()
        )


def count_of(table: Table) -> Any:
    """``SELECT count(*) FROM table``."""
    return select(func.count()).select_from(table)
