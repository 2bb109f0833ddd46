"""The outbox and its relays on real PostgreSQL and RabbitMQ: atomicity, no duplicates, crashes, order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import Command, CommandBus, Context, OperationStatus
from cqrskit.events import (
    Consumer,
    Envelope,
    Event,
    EventBus,
    OutboxPublisher,
    OutboxRelay,
)
from cqrskit.sqlalchemy import Transaction
from tests.events.support import outbox, wrap
from tests.integration.events.conftest import CountingTransport, Stage, eventually

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

ROOT = Path(__file__).resolve().parents[3]


@attrs.frozen
class Numbered(Event):
    n: int
    key: str | None = None

    def ordering_key(self) -> str | None:
        return self.key


@attrs.frozen
class Sentinel(Event):
    """Published last, straight to the broker: everything before it has reached the queue."""


@attrs.frozen
class Write(Command[None]):
    n: int
    fail: bool = False


class WriteHandler:
    def __init__(self, stage: Stage, publisher: OutboxPublisher, gate: asyncio.Event | None = None) -> None:
        self.stage = stage
        self.publisher = publisher
        self.gate = gate
        self.published = asyncio.Event()

    async def handle(self, command: Write, context: Context) -> None:
        await self.stage.database.session.execute(
            sa.insert(self.stage.effects).values(event_id=str(command.n))
        )
        await self.publisher.publish(Numbered(command.n))
        self.published.set()
        if self.gate is not None:
            await self.gate.wait()
        if command.fail:
            raise RuntimeError("the command fails after publishing")


async def outbox_rows(stage: Stage, *, unpublished: bool = False) -> int:
    table = await outbox(stage.database, stage.name)
    query = sa.select(sa.func.count()).select_from(table)
    if unpublished:
        query = query.where(table.c.published_at.is_(None))
    async with stage.database.engine.connect() as connection:
        return int(await connection.scalar(query) or 0)


async def write_events(stage: Stage, events: Sequence[Event], per_transaction: int = 25) -> None:
    publisher = OutboxPublisher(stage.database, schema=stage.name)
    for start in range(0, len(events), per_transaction):
        async with stage.database.transaction():
            for event in events[start : start + per_transaction]:
                await publisher.publish(event)


class Collector:
    """Reads a queue directly and records every message it gets, duplicates included."""

    def __init__(self, stage: Stage, queue: str, names: Sequence[str]) -> None:
        self.stage, self.queue, self.names = stage, queue, names
        self.received: list[Envelope] = []
        self.sentinel = asyncio.Event()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        async with self.stage.transport.consume(self.queue, self.names, prefetch=200) as deliveries:
            self.ready.set()
            async for delivery in deliveries:
                await delivery.ack()
                if delivery.envelope.name == "Sentinel":
                    self.sentinel.set()
                else:
                    self.received.append(delivery.envelope)


@contextlib.asynccontextmanager
async def running(*coroutines: Any) -> AsyncIterator[list[asyncio.Task[Any]]]:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def finish(stage: Stage, collector: Collector) -> None:
    """Wait until every row is marked, then read the queue up to a sentinel published after them."""
    await eventually(lambda: _none_pending(stage), what="every outbox row marked published")
    await stage.transport.publish([wrap(Sentinel())])
    await asyncio.wait_for(collector.sentinel.wait(), 30)


async def _none_pending(stage: Stage) -> bool:
    return await outbox_rows(stage, unpublished=True) == 0


class TestOutboxAtomicity:
    """Outbox rows commit or roll back with the command's own writes."""

    def bus(self, stage: Stage, handler: WriteHandler, publisher: OutboxPublisher) -> CommandBus:
        return CommandBus({Write: handler}, [Transaction(stage.database), publisher])

    async def test_a_failed_command_leaves_neither_row_nor_event(self, stage: Stage) -> None:
        """The handler writes and publishes, then raises: no effect row, no outbox row."""
        publisher = OutboxPublisher(stage.database, schema=stage.name)
        result = await self.bus(stage, WriteHandler(stage, publisher), publisher).execute(Write(1, fail=True))
        assert result.status is OperationStatus.FAILED
        assert await stage.effect_counts() == {}
        assert await outbox_rows(stage) == 0

    async def test_a_committed_command_leaves_both(self, stage: Stage) -> None:
        """A successful command leaves its effect row and its outbox row, with the command's ids."""
        publisher = OutboxPublisher(stage.database, schema=stage.name)
        bus = self.bus(stage, WriteHandler(stage, publisher), publisher)
        result = await bus.execute(Write(2), Context(correlation_id="corr-2"))
        assert result.is_success
        assert await stage.effect_counts() == {"2": 1}
        table = await outbox(stage.database, stage.name)
        async with stage.database.engine.connect() as connection:
            row = (await connection.execute(sa.select(table))).one()
        assert row.name == "Numbered"
        assert json.loads(row.payload) == {"n": 2, "key": None}
        headers = json.loads(row.headers)
        assert (headers["correlation_id"], headers["causation_id"]) == ("corr-2", result.operation_id)

    async def test_nothing_is_relayed_before_commit(self, stage: Stage) -> None:
        """While the command is still open after publishing, a relay pass finds nothing to send."""
        publisher = OutboxPublisher(stage.database, schema=stage.name)
        gate = asyncio.Event()
        handler = WriteHandler(stage, publisher, gate)
        relay = OutboxRelay(stage.database, stage.transport, schema=stage.name)
        async with running(self.bus(stage, handler, publisher).execute(Write(3))) as [command]:
            await asyncio.wait_for(handler.published.wait(), 30)
            assert await relay.relay_once() == 0
            gate.set()
            assert (await command).is_success
        assert await relay.relay_once() == 1


class TestRelays:
    """Several relays publish every row, none twice; a crash between publish and mark republishes."""

    async def test_three_relays_publish_a_thousand_events_once_each(self, stage: Stage) -> None:
        """1,000 events, keyed and unkeyed, three relay processes at once: the queue gets each once."""
        events = [Numbered(n, f"k{n % 40}" if n % 2 else None) for n in range(1000)]
        await write_events(stage, events, per_transaction=100)
        collector = Collector(stage, stage.queue(), ["Numbered", "Sentinel"])
        async with running(collector.run()):
            await asyncio.wait_for(collector.ready.wait(), 30)
            async with relay_processes(stage, 3, batch_size=100):
                await finish(stage, collector)
        numbers = [json.loads(e.payload)["n"] for e in collector.received]
        assert sorted(numbers) == list(range(1000))

    async def test_a_relay_killed_between_publish_and_mark(self, stage: Stage) -> None:
        """A relay process SIGKILLed after the confirms and before marking: all delivered, effects once."""
        events = [Numbered(n, f"k{n % 5}" if n % 3 == 0 else None) for n in range(300)]
        await write_events(stage, events)
        counting = CountingTransport(stage.transport_copy())
        deliveries = counting.delivered
        consumer = Consumer(
            counting,
            EventBus({Numbered: {"effects": _RecordEffect(stage)}}),
            stage.database,
            types={"Numbered": Numbered},
            queue=stage.queue(),
            schema=stage.name,
            prefetch=50,
            concurrency=4,
        )
        async with running(consumer.run()):
            await asyncio.wait_for(consumer.started(), 30)
            process = await start_relay_process(stage, die_after_publish=True)
            try:
                assert await asyncio.wait_for(process.wait(), 60) == -signal.SIGKILL
            finally:
                if process.returncode is None:
                    process.kill()
            assert await outbox_rows(stage, unpublished=True) == 300  # it died before marking anything
            await eventually(lambda: _at_least(deliveries, 1), what="the dead relay's batch delivered")
            relay = OutboxRelay(stage.database, stage.transport, schema=stage.name)
            async with running(relay.run()):
                await eventually(lambda: _effects_for(stage, 300), what="every event's effect")
                await eventually(lambda: _none_pending(stage), what="every row marked")
        assert len(deliveries) > 300  # the dead relay's batch went out twice
        counts = await stage.effect_counts()
        assert counts == {str(n): 1 for n in range(300)}


async def start_relay_process(
    stage: Stage, *, die_after_publish: bool = False, batch_size: int = 50
) -> asyncio.subprocess.Process:
    """Start tests/integration/events/relay_process.py: an OutboxRelay in a process of its own."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "RELAY_DATABASE_URL": stage.url,
        "RELAY_RABBITMQ_URL": stage.rabbitmq_url,
        "RELAY_EXCHANGE": stage.name,
        "RELAY_SCHEMA": stage.name,
        "RELAY_BATCH_SIZE": str(batch_size),
        "RELAY_DIE_AFTER_PUBLISH": "1" if die_after_publish else "",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("relay_process.py")), env=env
    )


@contextlib.asynccontextmanager
async def relay_processes(stage: Stage, count: int, *, batch_size: int) -> AsyncIterator[None]:
    """Run `count` relay processes for the length of the block, then terminate them (killed if need be)."""
    processes: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(count):
            processes.append(await start_relay_process(stage, batch_size=batch_size))  # noqa: PERF401 - one by one: those started are stopped even if a later start fails
        yield
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _at_least(items: list[Any], count: int) -> bool:
    return len(items) >= count


async def _effects_for(stage: Stage, count: int) -> bool:
    return len(await stage.effect_counts()) >= count


class _RecordEffect:
    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    async def handle(self, event: Numbered, context: Context) -> None:
        await self.stage.database.session.execute(
            sa.insert(self.stage.effects).values(event_id=str(event.n), detail=event.key)
        )


class _RecordOrder:
    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.seen: list[tuple[str | None, int]] = []

    async def handle(self, event: Numbered, context: Context) -> None:
        await self.stage.database.session.execute(
            sa.insert(self.stage.effects).values(event_id=f"{event.key}/{event.n}")
        )
        self.seen.append((event.key, event.n))


class TestOrdering:
    """One key's events reach a single consumer in commit order, with three relays running."""

    async def test_per_key_order_with_three_relays(self, stage: Stage) -> None:
        """Eight keys written concurrently, each in sequence; the consumer handles each key's in order."""
        recorder = _RecordOrder(stage)
        consumer = Consumer(
            stage.transport_copy(),
            EventBus({Numbered: {"order": recorder}}),
            stage.database,
            types={"Numbered": Numbered},
            queue=stage.queue(),
            schema=stage.name,
        )
        relays = [
            OutboxRelay(stage.database_copy(), stage.transport_copy(), schema=stage.name, batch_size=7)
            for _ in range(3)
        ]
        publisher = OutboxPublisher(stage.database, schema=stage.name)

        async def writer(key: str) -> None:
            for n in range(40):
                async with stage.database.transaction():
                    await publisher.publish(Numbered(n, key))

        async with running(consumer.run()):
            await asyncio.wait_for(consumer.started(), 30)
            async with running(*(relay.run() for relay in relays)):
                await asyncio.gather(*(writer(f"key-{k}") for k in range(8)))
                await eventually(lambda: _effects_for(stage, 320), what="every event handled")
        by_key: dict[str | None, list[int]] = {}
        for key, n in recorder.seen:
            by_key.setdefault(key, []).append(n)
        assert by_key == {f"key-{k}": list(range(40)) for k in range(8)}


class TestNotifications:
    """On PostgreSQL a commit with events wakes the relays at once instead of at the next poll."""

    async def test_a_commit_wakes_a_relay_that_polls_rarely(self, stage: Stage) -> None:
        """With a one-minute poll interval, a committed event is still published within seconds."""
        relay = OutboxRelay(stage.database_copy(), stage.transport, schema=stage.name, poll_interval=60)
        async with running(relay.run()):
            await asyncio.wait_for(relay.started(), 30)
            await write_events(stage, [Numbered(1)])
            await eventually(lambda: _none_pending(stage), what="the first event, by the first pass")
            await write_events(stage, [Numbered(2)])  # the relay is asleep for a minute by now
            await eventually(lambda: _none_pending(stage), within=20, what="published after the NOTIFY")
            relay.stop()
