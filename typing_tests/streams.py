"""Type checks for streaming queries: run by mypy --strict and pyright, never executed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import assert_type

import attrs

from cqrskit import Context, Query, QueryBus, Result, Stream, StreamHandler, StreamQuery


@attrs.frozen
class UserDto:
    id: str


@attrs.frozen
class ExportUsers(StreamQuery[UserDto]):
    pass


@attrs.frozen
class GetUser(Query[UserDto]):
    user_id: str


class ExportUsersHandler:
    async def handle(self, query: ExportUsers, context: Context) -> AsyncIterator[UserDto]:
        yield UserDto("1")


class WrongItemsHandler:
    async def handle(self, query: ExportUsers, context: Context) -> AsyncIterator[int]:
        yield 1


handler: StreamHandler[ExportUsers, UserDto] = ExportUsersHandler()
wrong: StreamHandler[ExportUsers, UserDto] = WrongItemsHandler()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


async def export(bus: QueryBus) -> None:
    result = await bus.stream(ExportUsers(), Context())
    assert_type(result, Result[Stream[UserDto]])
    async with result.unwrap() as users:
        assert_type(users, Stream[UserDto])
        async for user in users:
            assert_type(user, UserDto)
    iterator: AsyncIterator[UserDto] = result.unwrap()
    assert_type(await anext(iterator), UserDto)


async def wrong_uses(bus: QueryBus) -> None:
    await bus.stream(GetUser("1"))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await bus.execute(ExportUsers())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
