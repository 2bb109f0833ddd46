"""Process managers on PostgreSQL: one step at a time per instance; a dead-lettered command compensates."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import Command, CommandBus, Context
from cqrskit.events import CommandScheduler, Consumer, Event, OutboxRelay, ScheduleForwarder
from cqrskit.processes import ProcessManager, ProcessStatus, Reaction, Step, continues, starts
from cqrskit.sqlalchemy import Database, Transaction
from tests.integration.events.conftest import Stage, eventually
from tests.integration.events.test_scheduling import running
from tests.processes.orders import (
    COMMANDS,
    EffectHandler,
    OrderPlaced,
    Orders,
    OrderState,
    OrderTimeout,
    effects_table,
)

pytestmark = [pytest.mark.postgres]


@attrs.frozen
class Opened(Event):
    key: str


@attrs.frozen
class Bumped(Event):
    key: str
    label: str


@attrs.frozen
class CounterState:
    count: int = 0
    labels: tuple[str, ...] = ()


class Counter:
    """Counts Bumped events; the first one waits inside its step until the second is blocked."""

    def __init__(self, first_may_go_on: asyncio.Event) -> None:
        self.first_may_go_on = first_may_go_on
        self.in_step = 0
        self.most_at_once = 0

    def reactions(self) -> Sequence[Reaction[CounterState, Command[None]]]:
        return (starts(Opened, lambda e: e.key, self.opened), continues(Bumped, lambda e: e.key, self.bumped))

    async def opened(self, event: Opened) -> Step[CounterState, Command[None]]:
        return Step(CounterState())

    async def bumped(self, event: Bumped, state: CounterState) -> Step[CounterState, Command[None]]:
        self.in_step += 1
        self.most_at_once = max(self.most_at_once, self.in_step)
        try:
            if event.label == "first":
                await asyncio.wait_for(self.first_may_go_on.wait(), 30)
            return Step(CounterState(state.count + 1, (*state.labels, event.label)))
        finally:
            self.in_step -= 1


async def waiting_on_a_lock(stage: Stage) -> bool:
    """True when a session of the test's database waits for a lock (the second message's step)."""
    async with stage.database.engine.connect() as connection:
        waiting = await connection.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND application_name = :name"
            ),
            {"name": stage.name},
        )
    return bool(waiting)


class TestConcurrentSteps:
    async def test_two_messages_at_once_are_applied_one_after_the_other(self, stage: Stage) -> None:
        """The second waits for the first's commit and sees its state: count 2, never 1."""
        gate = asyncio.Event()
        counter = Counter(gate)
        managers = []
        for _ in range(2):  # two "processes": engines of their own, named so the test can watch them
            database = Database(
                stage.url,
                engine_options={"connect_args": {"server_settings": {"application_name": stage.name}}},
            )
            stage.extras.append(database)
            scheduler = CommandScheduler(database, schema=stage.name)
            managers.append(ProcessManager(counter, name="counter", state=CounterState, scheduler=scheduler))
        await managers[0].create_tables()
        await managers[0].handle(Opened("c1"), Context())
        first = asyncio.create_task(managers[0].handle(Bumped("c1", "first"), Context()))
        await eventually(lambda: _true(counter.in_step == 1), what="first step entered")
        second = asyncio.create_task(managers[1].handle(Bumped("c1", "second"), Context()))
        await eventually(lambda: waiting_on_a_lock(stage), what="second step blocked on the instance lock")
        gate.set()
        await asyncio.gather(first, second)
        instance = await managers[0].instance("c1")
        assert instance is not None
        assert instance.state == CounterState(2, ("first", "second"))
        assert instance.version == 3
        assert instance.status is ProcessStatus.RUNNING
        assert counter.most_at_once == 1

    async def test_concurrent_starts_make_one_instance(self, stage: Stage) -> None:
        """Ten deliveries of one start message at once: one instance, version 1."""
        counter = Counter(asyncio.Event())
        scheduler = CommandScheduler(stage.database, schema=stage.name)
        manager = ProcessManager(counter, name="counter", state=CounterState, scheduler=scheduler)
        await manager.create_tables()
        await asyncio.gather(*(manager.handle(Opened("c2"), Context()) for _ in range(10)))
        instance = await manager.instance("c2")
        assert instance is not None
        assert instance.version == 1
        assert len(instance.history) == 1


async def _true(value: bool) -> bool:
    return value


@pytest.mark.rabbitmq
class TestDeadLetteredCommands:
    async def test_a_command_dead_lettered_by_the_consumer_compensates(self, stage: Stage) -> None:
        """Ship fails twice on the worker and is dead-lettered: Refund then Release run, Unship does not."""
        effects = effects_table(stage.name)
        async with stage.database.engine.begin() as connection:
            await connection.run_sync(effects.metadata.create_all)
        scheduler = CommandScheduler(stage.database, schema=stage.name)
        manager = ProcessManager(Orders(), name="orders", state=OrderState, scheduler=scheduler)
        await manager.create_tables()
        effect = EffectHandler(stage.database, effects)
        bus = CommandBus(
            {**dict.fromkeys(COMMANDS.values(), effect), OrderTimeout: manager}, [Transaction(stage.database)]
        )
        queue = stage.queue("orders")
        consumer = Consumer(
            stage.transport,
            bus,
            stage.database,
            types={**COMMANDS, "OrderTimeout": OrderTimeout},
            queue=queue,
            schema=stage.name,
            max_attempts=2,
            backoff=0.01,
            dead_letter_hooks=[manager],
        )

        async def labels() -> list[str]:
            async with stage.database.engine.connect() as connection:
                return list(
                    (await connection.execute(sa.select(effects.c.label).order_by(effects.c.seq))).scalars()
                )

        async with running(consumer):
            await asyncio.wait_for(consumer.started(), 30)
            forwarder = ScheduleForwarder(scheduler, poll_interval=0.05)
            relay = OutboxRelay(stage.database, stage.transport, schema=stage.name, poll_interval=0.05)
            async with running(forwarder, relay):
                await manager.handle(OrderPlaced("p1", fail="Ship", how="failed"), Context())

                async def undone() -> bool:
                    return len(await labels()) == 4

                await eventually(undone, what="the compensations applied")
        assert await labels() == ["Reserve p1", "Charge p1", "Refund p1", "Release p1"]
        instance = await manager.instance("p1")
        assert instance is not None
        assert instance.status is ProcessStatus.COMPENSATED
        assert [e.message for e in instance.history] == ["OrderPlaced", "dead letter Ship"]
        assert instance.history[-1].sent == ("compensation Refund", "compensation Release")
        dead = await stage.transport.dead_letters(queue)
        assert [d.envelope.name for d in dead] == ["Ship"]
        assert dead[0].envelope.key == "process:orders:p1"
