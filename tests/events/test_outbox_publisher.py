"""OutboxPublisher on SQLite: rows commit or roll back with the command, stamped with its context."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from dependency_injector import containers, providers

from cqrskit import Command, CommandBus, Context, OperationStatus, Result
from cqrskit.events import Event, OutboxPublisher, create_event_tables
from cqrskit.sqlalchemy import Database, Transaction
from tests.events.support import outbox

NOTES = sa.Table("notes", sa.MetaData(), sa.Column("text", sa.String, primary_key=True))


@attrs.frozen
class Noted(Event):
    text: str


@attrs.frozen
class Note(Command[None]):
    text: str
    fail: bool = False


class NoteHandler:
    def __init__(self, database: Database, events: OutboxPublisher) -> None:
        self.database, self.events = database, events

    async def handle(self, command: Note, context: Context) -> None:
        await self.database.session.execute(sa.insert(NOTES).values(text=command.text))
        await self.events.publish(Noted(command.text))
        if command.fail:
            raise RuntimeError("fails after writing and publishing")


class Container(containers.DeclarativeContainer):
    database = providers.Singleton(Database)
    outbox = providers.Singleton(OutboxPublisher, database=database)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict({Note: providers.Factory(NoteHandler, database=database, events=outbox)}),
        behaviours=providers.List(providers.Singleton(Transaction, database=database), outbox),
    )


@pytest.fixture
async def container() -> AsyncIterator[Container]:
    container = Container()
    database = container.database()
    await container.outbox().create_tables()
    async with database.engine.begin() as connection:
        await connection.run_sync(NOTES.metadata.create_all)
    yield container
    await database.dispose()


async def rows(database: Database, table: sa.Table) -> list[Any]:
    async with database.engine.connect() as connection:
        return list((await connection.execute(sa.select(table))).all())


class TestOutboxPublisherOnABus:
    """Built in a container, the publisher writes outbox rows in the command's own transaction."""

    async def test_a_failed_command_leaves_neither_row_nor_event(self, container: Container) -> None:
        """The handler writes and publishes, then raises: no note, no outbox row."""
        result = await container.command_bus().execute(Note("a", fail=True))
        assert result.status is OperationStatus.FAILED
        assert await rows(container.database(), NOTES) == []
        assert await rows(container.database(), await outbox(container.database())) == []

    async def test_a_committed_command_leaves_both_with_its_context(self, container: Container) -> None:
        """A successful command leaves its note and one unpublished outbox row carrying its ids."""
        result = await container.command_bus().execute(Note("b"), Context(correlation_id="corr-b"))
        assert result.is_success
        assert len(await rows(container.database(), NOTES)) == 1
        [row] = await rows(container.database(), await outbox(container.database()))
        headers = json.loads(row.headers)
        assert (row.name, json.loads(row.payload), row.published_at) == ("Noted", {"text": "b"}, None)
        assert (headers["correlation_id"], headers["causation_id"]) == ("corr-b", result.operation_id)


class TestOutboxPublisherCalledDirectly:
    """As a behaviour with a fake next step, it stamps rows with the dispatch's context."""

    async def test_outbox_publisher_stamps_rows_with_the_dispatch(self) -> None:
        """Rows written inside call_next get the command's correlation id and operation id."""
        database = Database()
        try:
            await create_event_tables(database)
            publisher = OutboxPublisher(database)

            async def call_next(message: Any, context: Context) -> Result[Any]:
                await publisher.publish(Noted("j"))
                return Result.success(None)

            context = Context(principal=None, correlation_id="corr", operation_id="op-1")
            async with database.transaction():
                await publisher(Note("j"), context, call_next)
            [row] = await rows(database, await outbox(database))
            headers = json.loads(row.headers)
            assert (row.name, headers["correlation_id"], headers["causation_id"]) == ("Noted", "corr", "op-1")
        finally:
            await database.dispose()
