"""Type checks for the SQLAlchemy API: run by mypy --strict and pyright, never executed."""

from __future__ import annotations

from typing import assert_type
from uuid import UUID

import attrs
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from cqrskit import Command, CommandBus, Result
from cqrskit.behaviours import Retry
from cqrskit.scope import defer_until_commit
from cqrskit.sqlalchemy import Database, Transaction, TransactionBlock


@attrs.frozen
class CreateUser(Command[UUID]):
    email: str


database = Database("sqlite+aiosqlite:///app.db", read_url="sqlite+aiosqlite:///read.db")
assert_type(database.engine, AsyncEngine)
assert_type(database.read_engine, AsyncEngine)
assert_type(database.dialect_name, str)
assert_type(database.transaction("SERIALIZABLE"), TransactionBlock)

transaction = Transaction(
    database, isolation={CreateUser: "SERIALIZABLE"}, default_isolation="READ COMMITTED"
)
assert_type(transaction.isolation_for(CreateUser), str | None)


async def use(bus: CommandBus) -> None:
    async with database.transaction() as session:
        assert_type(session, AsyncSession)
        assert_type(database.session, AsyncSession)

    async def invalidate() -> None: ...

    assert_type(defer_until_commit(invalidate), bool)
    async with database.read_session() as reader:
        assert_type(reader, AsyncSession)
    result = await bus.execute(CreateUser("ada@example.com"))
    assert_type(result, Result[UUID])
    await database.dispose()


bus = CommandBus({}, [Retry(), transaction])
