"""Scheduled commands on the embedded default (SQLite, no broker): CommandScheduler and ScheduleRunner."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import Command, CommandBus, Context, OperationStatus, Result
from cqrskit.events import CommandScheduler, ScheduleRunner
from cqrskit.sqlalchemy import Database, Transaction

APPLIED = sa.Table(
    "applied",
    sa.MetaData(),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("label", sa.String, nullable=False),
)


@attrs.frozen
class Remind(Command[None]):
    label: str


@attrs.frozen
class Explode(Command[None]):
    label: str
    status: str = "failed"


class RemindHandler:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def handle(self, command: Remind, context: Context) -> None:
        await self._database.session.execute(sa.insert(APPLIED).values(label=command.label))


class ExplodeHandler:
    def __init__(self, database: Database) -> None:
        self._database = database
        self.calls = 0

    async def handle(self, command: Explode, context: Context) -> Result[None]:
        self.calls += 1
        await self._database.session.execute(sa.insert(APPLIED).values(label=command.label))
        return Result.failure(OperationStatus(command.status))


@attrs.define
class World:
    database: Database
    scheduler: CommandScheduler
    bus: CommandBus
    explode: ExplodeHandler

    def runner(self, **options: float) -> ScheduleRunner:
        return ScheduleRunner(self.scheduler, self.bus, poll_interval=0.01, **options)  # type: ignore[arg-type]

    async def applied(self) -> list[str]:
        async with self.database.engine.connect() as connection:
            return list(
                (await connection.execute(sa.select(APPLIED.c.label).order_by(APPLIED.c.seq))).scalars()
            )

    async def pending(self) -> int:
        async with self.database.engine.connect() as connection:
            table = sa.table("cqrskit_scheduled_commands", sa.column("dead_at"))
            return int(
                await connection.scalar(
                    sa.select(sa.func.count()).select_from(table).where(table.c.dead_at.is_(None))
                )
                or 0
            )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    database = Database()
    explode = ExplodeHandler(database)
    bus = CommandBus({Remind: RemindHandler(database), Explode: explode}, [Transaction(database)])
    scheduler = CommandScheduler(database)
    await scheduler.create_tables()
    async with database.engine.begin() as connection:
        await connection.run_sync(APPLIED.metadata.create_all)
    yield World(database, scheduler, bus, explode)
    await database.dispose()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


class TestCommandScheduler:
    async def test_a_due_command_runs_once(self, world: World) -> None:
        """A command scheduled after a short delay runs once, not before it is due."""
        scheduled_at = time.time()
        async with world.database.transaction():
            await world.scheduler.schedule(Remind("a"), after=0.2)
        runner = world.runner()
        assert await runner.run_once() == 0  # not due yet
        task = asyncio.create_task(runner.run())
        await eventually(lambda: _has(world, ["a"]))
        assert time.time() >= scheduled_at + 0.2
        runner.stop()
        await task
        assert await world.applied() == ["a"]
        assert await world.pending() == 0

    async def test_rolled_back_schedule_never_runs(self, world: World) -> None:
        """A command scheduled in a transaction that rolled back is not there to run."""
        with pytest.raises(RuntimeError, match="roll back"):
            await schedule_then_fail(world.database, world.scheduler, Remind("ghost"))
        assert await world.runner().run_once() == 0
        assert await world.applied() == []
        assert await world.pending() == 0

    async def test_a_cancelled_command_does_not_run(self, world: World) -> None:
        """cancel(key) removes a pending command; cancelling it again says there is nothing to cancel."""
        await world.scheduler.schedule(Remind("cancelled"), at=time.time(), key="k1")
        await world.scheduler.schedule(Remind("kept"), at=dt.datetime.now(dt.UTC), key="k2")
        async with world.database.transaction():
            assert await world.scheduler.cancel("k1") is True
        assert await world.scheduler.cancel("k1") is False
        await world.runner().run_once()
        assert await world.applied() == ["kept"]
        assert await world.scheduler.cancel("k2") is False  # it ran

    async def test_the_same_key_replaces_a_pending_command(self, world: World) -> None:
        """Scheduling under a pending key replaces the command and its time."""
        await world.scheduler.schedule(Remind("first"), after=3600, key="same")
        await world.scheduler.schedule(Remind("second"), key="same")
        await world.runner().run_once()
        assert await world.applied() == ["second"]
        assert await world.pending() == 0

    async def test_one_ordering_key_runs_in_due_order(self, world: World) -> None:
        """Commands sharing an ordering key run one at a time, in the order they are due."""
        now = time.time()
        for label, due in (("c", now - 1), ("a", now - 3), ("b", now - 2)):
            await world.scheduler.schedule(Remind(label), at=due, ordering_key="chain")
        runner = world.runner()
        while await runner.run_once():
            pass
        assert await world.applied() == ["a", "b", "c"]

    async def test_a_failing_command_is_retried_then_dead_lettered(self, world: World) -> None:
        """FAILED is retried with backoff up to max_attempts; its effects roll back every time."""
        await world.scheduler.schedule(Explode("boom"))
        runner = world.runner(max_attempts=3, backoff=0.01)
        task = asyncio.create_task(runner.run())
        await eventually(lambda: _pending_is(world, 0))
        runner.stop()
        await task
        assert world.explode.calls == 3
        assert await world.applied() == []

    async def test_a_validation_failure_is_dead_lettered_at_once(self, world: World) -> None:
        """A status a retry will not heal dead-letters the command on its first attempt."""
        await world.scheduler.schedule(Explode("bad", status="validation_error"))
        await world.runner().run_once()
        assert world.explode.calls == 1
        assert await world.pending() == 0

    async def test_naive_datetimes_are_refused(self, world: World) -> None:
        """`at` must carry a timezone; `at` and `after` together are refused."""
        with pytest.raises(ValueError, match="timezone"):
            await world.scheduler.schedule(Remind("x"), at=dt.datetime.now())  # noqa: DTZ005
        with pytest.raises(ValueError, match="not both"):
            await world.scheduler.schedule(Remind("x"), at=time.time(), after=1)

    async def test_a_restarted_runner_finds_what_was_scheduled(self, world: World, tmp_path: object) -> None:
        """The schedule is in the database: a new runner (a restarted process) runs it."""
        await world.scheduler.schedule(Remind("durable"))
        other = CommandScheduler(world.database)
        await ScheduleRunner(other, world.bus).run_once()
        assert await world.applied() == ["durable"]


async def _has(world: World, labels: list[str]) -> bool:
    return await world.applied() == labels


async def _pending_is(world: World, count: int) -> bool:
    return await world.pending() == count


async def schedule_then_fail(database: Database, scheduler: CommandScheduler, command: Command[None]) -> None:
    """Schedule `command` in a transaction that then raises, so it rolls back."""
    async with database.transaction():
        await scheduler.schedule(command)
        raise RuntimeError("roll back")
