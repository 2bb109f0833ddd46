"""The embedded default: OutboxPublisher + LocalTransport + Consumer, on SQLite and PostgreSQL.

Events are outbox rows written in the command's transaction and delivered in process after commit,
retried, dead-lettered into a table you can list, replay and purge, and delivered after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import Command, CommandBus, Context
from cqrskit.behaviours import Retry
from cqrskit.events import Consumer, Event, EventBus, LocalTransport, OutboxPublisher
from cqrskit.sqlalchemy import Database, Transaction
from tests.database.journal_app import eventually

effects = sa.Table(
    "local_effects",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item", sa.String(40), nullable=False),
)


@attrs.frozen
class ItemAdded(Event):
    item: str


@attrs.frozen
class AddItem(Command[None]):
    item: str
    fail: bool = False


class AddItemHandler:
    def __init__(self, events: OutboxPublisher) -> None:
        self.events = events

    async def handle(self, command: AddItem, context: Context) -> None:
        await self.events.publish(ItemAdded(command.item))
        if command.fail:
            raise RuntimeError("rolled back after publishing")


class RecordItem:
    """Writes one effect row per event, in the consumer's transaction; fails `failures[item]` times first."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.failures: dict[str, int] = {}
        self.attempts: dict[str, int] = {}

    async def handle(self, event: ItemAdded, context: Context) -> None:
        self.attempts[event.item] = self.attempts.get(event.item, 0) + 1
        await self.database.session.execute(sa.insert(effects).values(item=event.item))
        if self.failures.get(event.item, 0) > 0:
            self.failures[event.item] -= 1
            raise RuntimeError("the subscriber failed")


@attrs.define
class Embedded:
    database: Database
    transport: LocalTransport
    subscriber: RecordItem
    commands: CommandBus
    consumer: Consumer
    running: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.running = asyncio.create_task(self.consumer.run())
        await asyncio.wait_for(self.consumer.started(), 10)

    async def stop(self) -> None:
        if self.running is not None:
            await self.consumer.stop()
            self.running = None

    async def items(self) -> list[str]:
        async with self.database.read_session() as session:
            return sorted((await session.execute(sa.select(effects.c.item))).scalars())


def build(database: Database, schema: str | None, *, max_attempts: int = 3, lease: float = 30.0) -> Embedded:
    transport = LocalTransport(database, schema=schema, lease=lease, poll_interval=0.05)
    publisher = OutboxPublisher(database, schema=schema, wake=transport.wake)
    subscriber = RecordItem(database)
    event_bus = EventBus({ItemAdded: {"record": subscriber}})
    commands = CommandBus({AddItem: AddItemHandler(publisher)}, [Retry(), Transaction(database), publisher])
    consumer = Consumer(
        transport,
        event_bus,
        database,
        types={"ItemAdded": ItemAdded},
        queue="items",
        schema=schema,
        max_attempts=max_attempts,
        backoff=0.01,
        max_backoff=0.05,
    )
    return Embedded(database, transport, subscriber, commands, consumer)


@pytest.fixture(params=["sqlite", "postgresql"])
async def place(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> AsyncIterator[tuple[str, str | None]]:
    """A database URL and schema of this test's own, with the event tables and the effects table."""
    if request.param == "sqlite":
        url, schema = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}", None
    else:
        url, schema = request.getfixturevalue("postgres_url"), unique_name
    database = Database(url)
    await LocalTransport(database, schema=schema).create_tables()
    async with database.engine.begin() as connection:
        table = effects.to_metadata(sa.MetaData(schema=schema)) if schema else effects
        await connection.run_sync(table.metadata.create_all)
    await database.dispose()
    try:
        yield url, schema
    finally:
        if schema is not None:
            database = Database(url)
            async with database.engine.begin() as connection:
                await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await database.dispose()


@pytest.fixture
async def embedded(place: tuple[str, str | None]) -> AsyncIterator[Embedded]:
    url, schema = place
    database = Database(url, engine_options=_search_path(schema))
    system = build(database, schema)
    try:
        yield system
    finally:
        await system.stop()
        await database.dispose()


def _search_path(schema: str | None) -> dict[str, object]:
    """On PostgreSQL the effects table lives in the test's schema: put it first on the search path."""
    if schema is None:
        return {}
    return {"connect_args": {"server_settings": {"search_path": schema}}}


async def test_events_are_delivered_after_commit(embedded: Embedded) -> None:
    await embedded.start()
    (await embedded.commands.execute(AddItem("a"))).unwrap()
    (await embedded.commands.execute(AddItem("b"))).unwrap()

    async def both() -> bool:
        return await embedded.items() == ["a", "b"]

    await eventually(both, what="both events delivered")


async def test_a_rolled_back_command_delivers_nothing(embedded: Embedded) -> None:
    await embedded.start()
    assert (await embedded.commands.execute(AddItem("lost", fail=True))).is_failure
    (await embedded.commands.execute(AddItem("kept"))).unwrap()

    async def kept() -> bool:
        return await embedded.items() == ["kept"]

    await eventually(kept, what="the committed event delivered")
    assert embedded.subscriber.attempts == {"kept": 1}


async def test_a_failing_subscriber_is_retried_and_its_effect_happens_once(embedded: Embedded) -> None:
    embedded.subscriber.failures["x"] = 2  # max_attempts is 3
    await embedded.start()
    (await embedded.commands.execute(AddItem("x"))).unwrap()

    async def once() -> bool:
        return await embedded.items() == ["x"]

    await eventually(once, what="the event delivered on its third attempt")
    assert embedded.subscriber.attempts == {"x": 3}
    assert await embedded.transport.dead_letters("items") == []


async def test_dead_letters_can_be_listed_replayed_and_purged(embedded: Embedded) -> None:
    embedded.subscriber.failures.update({"p": 10, "q": 10})
    await embedded.start()
    for item in ("p", "q"):
        (await embedded.commands.execute(AddItem(item))).unwrap()

    async def two_dead() -> bool:
        return len(await embedded.transport.dead_letters("items")) == 2

    await eventually(two_dead, what="both events dead-lettered after 3 attempts")
    dead = await embedded.transport.dead_letters("items")
    assert [envelope.name for envelope in dead] == ["ItemAdded", "ItemAdded"]
    assert await embedded.items() == []  # each failed attempt rolled back

    embedded.subscriber.failures["p"] = 0
    assert await embedded.transport.replay("items", [dead[0].message_id]) == 1

    async def replayed() -> bool:
        return await embedded.items() == ["p"]

    await eventually(replayed, what="the replayed dead letter delivered")
    assert [envelope.message_id for envelope in await embedded.transport.dead_letters("items")] == [
        dead[1].message_id
    ]
    assert await embedded.transport.purge("items") == 1
    assert await embedded.transport.dead_letters("items") == []


async def test_events_committed_while_no_consumer_ran_are_delivered_at_start(embedded: Embedded) -> None:
    """A process that died between COMMIT and delivery: its rows wait in the outbox for the next start."""
    (await embedded.commands.execute(AddItem("early"))).unwrap()
    assert await embedded.items() == []
    await embedded.start()

    async def delivered() -> bool:
        return await embedded.items() == ["early"]

    await eventually(delivered, what="the waiting event delivered")


async def test_rows_held_by_a_dead_consumer_return_when_its_lease_runs_out(
    place: tuple[str, str | None],
) -> None:
    url, schema = place
    database = Database(url, engine_options=_search_path(schema))
    try:
        first = build(database, schema, lease=0.3)
        (await first.commands.execute(AddItem("held"))).unwrap()
        # A consumer that claims the row and dies without settling it (its process was killed): it
        # is closed only at the end, after the row was delivered elsewhere.
        consuming = first.transport.consume("items", ["ItemAdded"], prefetch=5)
        deliveries = await consuming.__aenter__()
        claimed = await anext(aiter(deliveries))
        assert claimed.envelope.name == "ItemAdded"
        second = build(database, schema, lease=0.3)
        await second.start()
        try:

            async def delivered() -> bool:
                return await second.items() == ["held"]

            await eventually(delivered, what="the row delivered once its lease ran out")
        finally:
            await second.stop()
            await consuming.__aexit__(None, None, None)
    finally:
        await database.dispose()
