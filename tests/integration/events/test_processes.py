"""Process managers on PostgreSQL: two messages for one instance at once are applied one after the other."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import Command, Context
from cqrskit.events import CommandScheduler, Event
from cqrskit.processes import ProcessManager, ProcessStatus, Reaction, Step, continues, starts
from cqrskit.sqlalchemy import Database
from tests.integration.events.conftest import Stage, eventually

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
