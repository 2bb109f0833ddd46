"""The tests every `Transport` must pass, for RabbitMQ, NATS, and the transport you write yourself.

Subclass `TransportConformance` in a test module of yours and give it one fixture,
``transport_harness``, that returns a `TransportHarness` for your transport (see docs/events.md,
"Checking a transport"). The tests need pytest, pytest-asyncio, and a PostgreSQL database (the outbox,
the relays and the consumer's inbox run on it); each test works in a schema of its own and drops it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import attrs
import pytest
import pytest_asyncio
import sqlalchemy as sa

from cqrskit._context import Context, Principal
from cqrskit.events._bus import EventBus
from cqrskit.events._consumer import Consumer
from cqrskit.events._envelope import Envelope, envelope_for
from cqrskit.events._event import Event
from cqrskit.events._outbox import OutboxPublisher
from cqrskit.events._relay import OutboxRelay
from cqrskit.events._tables import create_event_tables, event_tables
from cqrskit.events._transport import Transport
from cqrskit.sqlalchemy._database import Database

__all__ = ["ConformanceEvent", "TransportConformance", "TransportHarness"]


class TransportHarness(abc.ABC):
    """What the conformance suite needs to drive one transport: subclass it for yours.

    One harness serves one test. Everything it opens or declares should carry names of its own (a
    random suffix) so that tests never meet, and `close` removes all of it.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        """A PostgreSQL URL (``postgresql+asyncpg://...``) the suite may create and drop schemas in."""

    @abc.abstractmethod
    async def open(self) -> Transport:
        """Return a new transport with a connection of its own, as another process would have one.

        All the transports a harness opens publish to and consume from the same place (exchange,
        stream...). A transport that redelivers after a timeout rather than at once when a
        connection drops should use a short one here (a second or two): `kill` relies on it.
        """

    @abc.abstractmethod
    async def kill(self, transport: Transport) -> None:
        """Drop `transport`'s connection the way a dying process would: nothing settled or given back."""

    @abc.abstractmethod
    async def dead_letters(self, queue: str) -> list[Envelope]:
        """Return the envelopes dead-lettered from `queue`, oldest first, with all their headers."""

    @abc.abstractmethod
    async def close(self, queues: Sequence[str]) -> None:
        """Close every transport `open` returned and delete `queues` and whatever else the harness made."""


@attrs.frozen
class ConformanceEvent(Event):
    """The event the conformance tests send: a number, an optional ordering key, and a poison flag."""

    n: int
    key: str | None = None
    poison: bool = False

    def ordering_key(self) -> str | None:
        """Return the key, when there is one: one key's events keep their order."""
        return self.key


_TYPES = {"ConformanceEvent": ConformanceEvent}


@attrs.define
class _Stage:
    harness: TransportHarness
    schema: str
    database: Database
    effects: sa.Table
    queues: list[str] = attrs.Factory(list)
    databases: list[Database] = attrs.Factory(list)

    def queue(self) -> str:
        name = f"{self.schema}.q{len(self.queues)}"
        self.queues.append(name)
        return name

    def database_copy(self) -> Database:
        database = Database(self.harness.database_url)
        self.databases.append(database)
        return database

    async def effects_by_event(self) -> dict[str, int]:
        async with self.database.engine.connect() as connection:
            rows = await connection.execute(
                sa.select(self.effects.c.event, sa.func.count()).group_by(self.effects.c.event)
            )
            return {row[0]: row[1] for row in rows}

    async def effects_in_order(self) -> list[str]:
        async with self.database.engine.connect() as connection:
            rows = await connection.execute(sa.select(self.effects.c.event).order_by(self.effects.c.seq))
            return list(rows.scalars())

    def consumer(self, transport: Transport, queue: str, subscriber: Any, **options: Any) -> Consumer:
        return Consumer(
            transport,
            EventBus({ConformanceEvent: {"effect": subscriber}}),
            self.database,
            types=_TYPES,
            queue=queue,
            schema=self.schema,
            **options,
        )


class _Record:
    """Writes one effect row per event (``<key>/<n>``), in the consumer's transaction."""

    def __init__(self, stage: _Stage, *, hold: float = 0.0, gate: asyncio.Event | None = None) -> None:
        self.stage, self.hold, self.gate = stage, hold, gate
        self.started = asyncio.Event()

    async def handle(self, event: ConformanceEvent, context: Context) -> None:
        if event.poison:
            raise RuntimeError("this event can never be handled")
        session = self.stage.database.session
        await session.execute(sa.insert(self.stage.effects).values(event=f"{event.key}/{event.n}"))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()  # the transaction stays open until the gate opens (or forever)
        if self.hold:
            await asyncio.sleep(self.hold)


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {within}s: {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _running(*coroutines: Awaitable[Any]) -> AsyncIterator[list[asyncio.Task[Any]]]:
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def _consuming(consumer: Consumer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(consumer.run())
    try:
        started = asyncio.ensure_future(consumer.started())
        await asyncio.wait({started, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            if task.done():
                task.result()
            pytest.fail("the consumer did not start within 30s")
        yield task
    finally:
        await consumer.stop(grace=5)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def _declare(transport: Transport, queue: str) -> None:
    """Create `queue` (bound to the conformance event) without taking anything from it."""
    async with transport.consume(queue, tuple(_TYPES), prefetch=1):
        pass


def _envelopes(count: int, key: str | None = None) -> list[Envelope]:
    return [envelope_for(ConformanceEvent(n, key), None) for n in range(count)]


class TransportConformance:
    """The transport conformance suite: subclass it and provide a ``transport_harness`` fixture.

    The tests: publish returns only once the broker has the messages; at-least-once from outbox to
    effect, duplicates handled once; redelivery after a consumer dies without acknowledging; dead
    letters after `max_attempts`, every header kept; one key's order with several relays; a consumer
    stopped mid-batch loses nothing.
    """

    @pytest_asyncio.fixture
    async def conformance_stage(self, transport_harness: TransportHarness) -> AsyncIterator[_Stage]:
        """Make a schema with the event tables and an effects table; remove it (and the queues) afterwards."""
        schema = "cqrskit_conformance_" + secrets.token_hex(5)
        database = Database(transport_harness.database_url)
        effects = sa.Table(
            "effects",
            sa.MetaData(schema=schema),
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("event", sa.String, nullable=False),
        )
        stage = _Stage(transport_harness, schema, database, effects)
        try:
            await create_event_tables(database, schema)
            async with database.engine.begin() as connection:
                await connection.run_sync(effects.metadata.create_all)
            yield stage
        finally:
            with contextlib.suppress(Exception):
                await transport_harness.close(stage.queues)
            for copy in stage.databases:
                await copy.dispose()
            async with database.engine.begin() as connection:
                await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await database.dispose()

    async def test_publish_returns_once_the_broker_has_the_messages(self, conformance_stage: _Stage) -> None:
        """A publisher killed right after `publish` returned: every message still reaches the queue."""
        stage = conformance_stage
        queue = stage.queue()
        await _declare(await stage.harness.open(), queue)
        publisher = await stage.harness.open()
        sent = _envelopes(100, key="k") + _envelopes(100)
        await publisher.publish(sent)
        await stage.harness.kill(publisher)
        received: set[str] = set()
        async with (await stage.harness.open()).consume(queue, tuple(_TYPES), prefetch=50) as deliveries:

            async def collect() -> None:
                async for delivery in deliveries:
                    received.add(delivery.envelope.message_id)
                    await delivery.ack()
                    if len(received) == len(sent):
                        return

            await asyncio.wait_for(collect(), 60)
        assert received == {e.message_id for e in sent}

    async def test_at_least_once_from_outbox_to_effect(self, conformance_stage: _Stage) -> None:
        """Outbox rows relayed and consumed have one effect each; the same messages again change nothing."""
        stage = conformance_stage
        queue = stage.queue()
        transport = await stage.harness.open()
        consumer = stage.consumer(transport, queue, _Record(stage), concurrency=4, prefetch=20)
        publisher = OutboxPublisher(stage.database, schema=stage.schema)
        relay = OutboxRelay(stage.database, await stage.harness.open(), schema=stage.schema, batch_size=50)
        async with _consuming(consumer):
            for start in range(0, 200, 20):
                async with stage.database.transaction():
                    for n in range(start, start + 20):
                        await publisher.publish(ConformanceEvent(n, f"k{n % 7}" if n % 2 else None))
            while await relay.relay_once():
                pass
            await _eventually(lambda: _count_at_least(stage, 200), "every event's effect")
            outbox = event_tables(stage.schema).outbox
            async with stage.database.engine.connect() as connection:
                rows = (await connection.execute(sa.select(outbox.c.message_id))).all()
            assert len(rows) == 200
            duplicates = [envelope_for(ConformanceEvent(n), None) for n in range(1000, 1005)]
            await transport.publish(duplicates + duplicates)  # each message twice: one effect each
            await _eventually(lambda: _count_at_least(stage, 205), "the duplicated messages' effects")
            await asyncio.sleep(0.5)  # room for a wrong second effect to show
        expected = [f"{f'k{n % 7}' if n % 2 else None}/{n}" for n in range(200)]
        expected += [f"None/{n}" for n in range(1000, 1005)]
        assert await stage.effects_by_event() == dict.fromkeys(expected, 1)

    async def test_redelivery_after_a_consumer_dies_without_ack(self, conformance_stage: _Stage) -> None:
        """A consumer killed inside its handler: another consumer gets the message and has its effect once."""
        stage = conformance_stage
        queue = stage.queue()
        dying_transport = await stage.harness.open()
        stuck = _Record(stage, gate=asyncio.Event())  # never opened: the first handler never finishes
        dying = stage.consumer(dying_transport, queue, stuck)
        async with _consuming(dying) as task:
            await (await stage.harness.open()).publish(_envelopes(1, key="k"))
            await asyncio.wait_for(stuck.started.wait(), 30)
            await stage.harness.kill(dying_transport)  # the process dies: no ack, no nack
            task.cancel()  # and its open transaction rolls back
        survivor = stage.consumer(await stage.harness.open(), queue, _Record(stage))
        async with _consuming(survivor):
            await _eventually(lambda: _count_at_least(stage, 1), "the message handled by the survivor")
        assert await stage.effects_by_event() == {"k/0": 1}

    async def test_dead_letters_after_n_attempts_keep_every_header(self, conformance_stage: _Stage) -> None:
        """A poison message is tried `max_attempts` times, then dead-lettered as sent; the rest is handled."""
        stage = conformance_stage
        queue = stage.queue()
        transport = await stage.harness.open()
        context = Context(principal=Principal("alice", ("stats:write",), ("member",)), correlation_id="corr")
        poison = envelope_for(ConformanceEvent(0, "k", poison=True), context.child())
        good = [envelope_for(ConformanceEvent(n, "k"), None) for n in range(1, 4)]
        consumer = stage.consumer(transport, queue, _Record(stage), max_attempts=3, backoff=0.01)
        async with _consuming(consumer):
            await transport.publish([poison, *good])
            await _eventually(lambda: _count_at_least(stage, 3), "the good messages handled")
            await _eventually(lambda: _dead_lettered(stage, queue), "the poison message dead-lettered")
        dead = await stage.harness.dead_letters(queue)
        assert [(d.message_id, d.name, d.payload) for d in dead] == [
            (poison.message_id, poison.name, poison.payload)
        ]
        (letter,) = dead
        assert (letter.key, letter.correlation_id, letter.causation_id, letter.principal) == (
            poison.key,
            poison.correlation_id,
            poison.causation_id,
            poison.principal,
        )
        assert await stage.effects_by_event() == {"k/1": 1, "k/2": 1, "k/3": 1}

    async def test_one_keys_order_holds_with_several_relays(self, conformance_stage: _Stage) -> None:
        """Six keys written concurrently, three relays: one consumer handles each key's events in order."""
        stage = conformance_stage
        queue = stage.queue()
        consumer = stage.consumer(await stage.harness.open(), queue, _Record(stage))
        relays = [
            OutboxRelay(stage.database_copy(), await stage.harness.open(), schema=stage.schema, batch_size=7)
            for _ in range(3)
        ]
        publisher = OutboxPublisher(stage.database, schema=stage.schema)

        async def writer(key: str) -> None:
            for n in range(30):
                async with stage.database.transaction():
                    await publisher.publish(ConformanceEvent(n, key))

        async with _consuming(consumer), _running(*(relay.run() for relay in relays)):
            await asyncio.gather(*(writer(f"key-{k}") for k in range(6)))
            await _eventually(lambda: _count_at_least(stage, 180), "every event handled")
        by_key: dict[str, list[int]] = {}
        for effect in await stage.effects_in_order():
            key, n = effect.split("/")
            by_key.setdefault(key, []).append(int(n))
        assert by_key == {f"key-{k}": list(range(30)) for k in range(6)}

    async def test_a_consumer_stopped_mid_batch_loses_nothing(self, conformance_stage: _Stage) -> None:
        """Forty slow messages, the consumer stopped midway: a new one handles the rest, each once."""
        stage = conformance_stage
        queue = stage.queue()
        transport = await stage.harness.open()
        first = stage.consumer(transport, queue, _Record(stage, hold=0.1), concurrency=4, prefetch=8)
        async with _consuming(first):
            await transport.publish(_envelopes(40))
            await _eventually(lambda: _count_at_least(stage, 8), "a first part handled")
            await first.stop(grace=0)  # the handlers in flight are cut off: their transactions roll back
        assert len(await stage.effects_by_event()) < 40
        second = stage.consumer(await stage.harness.open(), queue, _Record(stage), concurrency=4)
        async with _consuming(second):
            await _eventually(lambda: _count_at_least(stage, 40), "every message handled")
        assert await stage.effects_by_event() == {f"None/{n}": 1 for n in range(40)}


async def _count_at_least(stage: _Stage, count: int) -> bool:
    return sum((await stage.effects_by_event()).values()) >= count


async def _dead_lettered(stage: _Stage, queue: str) -> bool:
    return bool(await stage.harness.dead_letters(queue))
