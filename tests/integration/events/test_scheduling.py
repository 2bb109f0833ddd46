"""Scheduled commands on PostgreSQL: several runners share the due rows; with RabbitMQ through the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import Command, CommandBus, Context
from cqrskit.events import CommandScheduler, Consumer, OutboxRelay, ScheduleForwarder, ScheduleRunner
from cqrskit.sqlalchemy import Database, Transaction
from tests.events.test_scheduling import schedule_then_fail
from tests.integration.events.conftest import Stage, eventually

pytestmark = [pytest.mark.postgres]

MANY = 1_000


@attrs.frozen
class Tick(Command[None]):
    n: int


class TickHandler:
    """Writes one effect row per application, through whichever database its bus was built with."""

    def __init__(self, database: Database, effects: sa.Table) -> None:
        self._database = database
        self._effects = effects

    async def handle(self, command: Tick, context: Context) -> None:
        await self._database.session.execute(sa.insert(self._effects).values(event_id=str(command.n)))


def bus_for(database: Database, stage: Stage) -> CommandBus:
    return CommandBus({Tick: TickHandler(database, stage.effects)}, [Transaction(database)])


@contextlib.asynccontextmanager
async def running(*loops: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    try:
        yield
    finally:
        for loop in loops:
            stop = loop.stop()
            if asyncio.iscoroutine(stop):
                await stop
        await asyncio.gather(*tasks, return_exceptions=True)


async def schedule_many(scheduler: CommandScheduler, database: Database, due: float) -> None:
    async with database.transaction():
        for n in range(MANY):
            await scheduler.schedule(Tick(n), at=due)


def all_once(stage: Stage) -> Callable[[], Any]:
    async def check() -> bool:
        counts = await stage.effect_counts()
        assert all(count == 1 for count in counts.values()), {k: v for k, v in counts.items() if v > 1}
        return len(counts) == MANY

    return check


class TestSeveralRunners:
    async def test_a_thousand_due_at_once_are_applied_once(self, stage: Stage) -> None:
        """1,000 commands due at the same moment, four runners, engines of their own: each applied once."""
        scheduler = CommandScheduler(stage.database, schema=stage.name)
        await scheduler.create_tables()
        await schedule_many(scheduler, stage.database, due=time.time() + 0.5)
        runners: list[ScheduleRunner] = []
        for _ in range(4):
            database = stage.database_copy()
            runners.append(
                ScheduleRunner(
                    CommandScheduler(database, schema=stage.name),
                    bus_for(database, stage),
                    poll_interval=0.05,
                    batch_size=50,
                )
            )
        async with running(*runners):
            await eventually(all_once(stage), within=120, what="1,000 applied")
        assert await _left(stage) == 0

    async def test_rolled_back_and_cancelled_commands_never_run(self, stage: Stage) -> None:
        """On PostgreSQL too: nothing runs for a rolled-back schedule or a cancelled key."""
        scheduler = CommandScheduler(stage.database, schema=stage.name)
        await scheduler.create_tables()
        with pytest.raises(RuntimeError, match="roll back"):
            await schedule_then_fail(stage.database, scheduler, Tick(1))
        await scheduler.schedule(Tick(2), key="cancel-me")
        await scheduler.schedule(Tick(3))
        assert await scheduler.cancel("cancel-me")
        runner = ScheduleRunner(scheduler, bus_for(stage.database, stage))
        assert await runner.run_once() == 1
        assert await stage.effect_counts() == {"3": 1}


@pytest.mark.rabbitmq
class TestThroughTheBroker:
    async def test_a_thousand_due_at_once_go_through_the_outbox_once(self, stage: Stage) -> None:
        """Two forwarders, two relays and two worker consumers: every one of 1,000 commands applied once."""
        scheduler = CommandScheduler(stage.database, schema=stage.name)
        await scheduler.create_tables()
        queue = stage.queue("ticks")
        consumers: list[Consumer] = []
        loops: list[Any] = []
        for _ in range(2):
            database = stage.database_copy()
            transport = stage.transport_copy()
            consumers.append(
                Consumer(
                    transport,
                    bus_for(database, stage),
                    database,
                    types={"Tick": Tick},
                    queue=queue,
                    schema=stage.name,
                    prefetch=50,
                    concurrency=8,
                )
            )
            loops.append(ScheduleForwarder(CommandScheduler(database, schema=stage.name), poll_interval=0.05))
            loops.append(OutboxRelay(database, transport, schema=stage.name, poll_interval=0.05))
        async with running(*consumers):
            for consumer in consumers:
                await asyncio.wait_for(consumer.started(), 30)
            await schedule_many(scheduler, stage.database, due=time.time() + 0.5)
            async with running(*loops):
                await eventually(all_once(stage), within=180, what="1,000 applied through RabbitMQ")
        assert await _left(stage) == 0


async def _left(stage: Stage) -> int:
    table = sa.table("cqrskit_scheduled_commands", schema=stage.name)
    async with stage.database.engine.connect() as connection:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
