"""A command a process sent, dead-lettered by the embedded `ScheduleRunner`: the process compensates."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import CommandBus, Context
from cqrskit.events import CommandScheduler, DeadLetterHook, Envelope, ScheduleRunner
from cqrskit.events._schedule_table import schedule_table
from cqrskit.processes import ProcessManager, ProcessStatus, stuck_instances
from cqrskit.sqlalchemy import Database, Transaction
from tests.processes.orders import (
    COMMANDS,
    EFFECTS,
    EffectHandler,
    OrderPlaced,
    Orders,
    OrderState,
    OrderTimeout,
)


@attrs.define
class World:
    database: Database
    manager: ProcessManager[OrderState, object]  # type: ignore[type-var]
    runner: ScheduleRunner

    async def run_all(self) -> None:
        """Run the runner until nothing is due (retries come due after a 10 ms backoff)."""
        deadline = time.monotonic() + 60
        while True:
            await self.runner.run_once()
            schedule = schedule_table()
            async with self.database.read_session() as session:
                waiting = await session.scalar(
                    sa.select(sa.func.count()).where(
                        schedule.c.dead_at.is_(None), schedule.c.name != "OrderTimeout"
                    )
                )
            if not waiting:
                return
            assert time.monotonic() < deadline, "the schedule did not drain"

    async def effects(self) -> list[str]:
        async with self.database.read_session() as session:
            return list((await session.execute(sa.select(EFFECTS.c.label).order_by(EFFECTS.c.seq))).scalars())

    async def schedule(self) -> list[tuple[str, bool]]:
        schedule = schedule_table()
        async with self.database.read_session() as session:
            rows = await session.execute(
                sa.select(schedule.c.name, schedule.c.dead_at).order_by(schedule.c.id)
            )
            return [(row.name, row.dead_at is not None) for row in rows]


def build(database: Database, hooks: bool) -> World:
    scheduler = CommandScheduler(database)
    manager = ProcessManager(Orders(), name="orders", state=OrderState, scheduler=scheduler)
    effect = EffectHandler(database)
    bus = CommandBus(
        {**dict.fromkeys(COMMANDS.values(), effect), OrderTimeout: manager}, [Transaction(database)]
    )
    hooked: Sequence[DeadLetterHook] = [manager] if hooks else []
    runner = ScheduleRunner(
        scheduler, bus, max_attempts=2, backoff=0.01, max_backoff=0.01, dead_letter_hooks=hooked
    )
    return World(database, manager, runner)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    database = Database()
    built = build(database, hooks=True)
    await built.manager.create_tables()
    async with database.engine.begin() as connection:
        await connection.run_sync(EFFECTS.metadata.create_all)
    yield built
    await database.dispose()


class TestDeadLetteredCommands:
    async def test_the_last_command_failing_compensates_the_others_in_reverse(self, world: World) -> None:
        """Ship is refused for good: Refund then Release run, Unship does not; the deadline is dropped."""
        await world.manager.handle(OrderPlaced("o1", fail="Ship"), Context())
        await world.run_all()
        assert await world.effects() == ["Reserve o1", "Charge o1", "Refund o1", "Release o1"]
        instance = await world.manager.instance("o1")
        assert instance is not None
        assert instance.status is ProcessStatus.COMPENSATED
        assert [e.message for e in instance.history] == ["OrderPlaced", "dead letter Ship"]
        assert instance.history[-1].sent == ("compensation Refund", "compensation Release")
        assert await world.schedule() == [("Ship", True)]  # the dead letter; the timeout was cancelled
        later = time.time() + 7200
        assert await stuck_instances(world.database, now=later) == []

    async def test_a_failed_middle_command_cancels_those_after_it(self, world: World) -> None:
        """Charge fails twice (retried once): Ship, waiting behind it, never runs; only Release does."""
        await world.manager.handle(OrderPlaced("o2", fail="Charge", how="failed"), Context())
        await world.run_all()
        assert await world.effects() == ["Reserve o2", "Release o2"]
        instance = await world.manager.instance("o2")
        assert instance is not None
        assert instance.status is ProcessStatus.COMPENSATED
        assert instance.history[-1].message == "dead letter Charge"
        assert instance.history[-1].sent == ("compensation Release",)
        assert await world.schedule() == [("Charge", True)]

    async def test_without_the_hook_the_process_keeps_waiting(self, world: World) -> None:
        """The same failure through a runner given no hook: the instance stays running, nothing undone."""
        unhooked = build(world.database, hooks=False)
        await unhooked.manager.handle(OrderPlaced("o3", fail="Ship"), Context())
        await unhooked.run_all()
        assert await world.effects() == ["Reserve o3", "Charge o3"]
        instance = await world.manager.instance("o3")
        assert instance is not None
        assert instance.status is ProcessStatus.RUNNING

    async def test_dead_letters_not_its_own_change_nothing(self, world: World) -> None:
        """Another key, another process's chain, or an instance that has ended: ignored."""
        await world.manager.handle(OrderPlaced("o4"), Context())
        await world.run_all()
        assert await world.effects() == ["Reserve o4", "Charge o4", "Ship o4"]
        before = await world.manager.instance("o4")
        for key in (None, "user:o4", "process:other:o4", "process:orders:nobody"):
            envelope = Envelope(message_id="m1", name="Ship", payload=b"{}", key=key)
            async with world.database.transaction():
                await world.manager.dead_lettered(envelope, "test")
        assert await world.manager.instance("o4") == before
        await world.manager.handle(OrderTimeout("o4"), Context())  # it compensates: ended
        ended = await world.manager.instance("o4")
        async with world.database.transaction():
            await world.manager.dead_lettered(
                Envelope(message_id="m2", name="Ship", payload=b"{}", key="process:orders:o4"), "test"
            )
        assert await world.manager.instance("o4") == ended
        assert ended is not None
        assert ended.status is ProcessStatus.COMPENSATED


class TestTenants:
    async def test_a_dead_letter_compensates_only_its_own_tenants_instance(self, world: World) -> None:
        """Two tenants place order o5; acme's Ship fails for good: only acme's instance compensates.

        globex's instance is started first, so a lookup by key alone would find it before acme's.
        """
        await world.manager.handle(OrderPlaced("o5"), Context(tenant="globex"))
        await world.manager.handle(OrderPlaced("o5", fail="Ship"), Context(tenant="acme"))
        await world.run_all()
        acme = await world.manager.instance("o5", tenant="acme")
        globex = await world.manager.instance("o5", tenant="globex")
        assert acme is not None
        assert globex is not None
        assert acme.status is ProcessStatus.COMPENSATED
        assert acme.history[-1].message == "dead letter Ship"
        assert globex.status is ProcessStatus.RUNNING  # still waiting for its timeout, nothing undone
        assert [e.message for e in globex.history] == ["OrderPlaced"]
        assert sorted(await world.effects()) == sorted(
            ["Reserve o5", "Charge o5", "Reserve o5", "Charge o5", "Ship o5", "Refund o5", "Release o5"]
        )

    async def test_stuck_instances_name_their_tenant(self, world: World) -> None:
        """The same key in two tenants is two stuck instances, each with its tenant; no tenant is None."""
        await world.manager.handle(OrderPlaced("o6"), Context(tenant="acme"))
        await world.manager.handle(OrderPlaced("o6"), Context(tenant="globex"))
        await world.manager.handle(OrderPlaced("o7"), Context())
        await world.run_all()
        stuck = await stuck_instances(world.database, now=time.time() + 7200)
        assert sorted((s.key, s.tenant) for s in stuck) == [("o6", "acme"), ("o6", "globex"), ("o7", None)]
