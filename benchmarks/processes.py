"""Process steps per second, and how late deadlines run, embedded (SQLite) and on PostgreSQL + RabbitMQ.

Run: ``PYTHONPATH=src:. python -m benchmarks.processes`` (PostgreSQL and RabbitMQ at
``CQRSKIT_POSTGRES_URL`` / ``CQRSKIT_RABBITMQ_URL``, defaults 127.0.0.1; a schema and an exchange of its
own, removed at the end). Figures are printed; there is no aim yet.

- Steps per second: ``STEPS`` process steps (starts, then one continue each), each a transaction of its
  own through `ProcessManager.handle`, over distinct instances: from one task on SQLite (one writer
  at a time), from ``WRITERS`` concurrent tasks on PostgreSQL.
- Deadline delay: instances each set a deadline due at a moment spread over a window; the deadline's
  step records how long after its due time it ran (p50, p99). Twice: a burst of ``DEADLINES`` due
  within one second (more than either setup steps through in a second, so it measures the backlog's
  drain), and a light load of ``LIGHT_DEADLINES`` spread over ``LIGHT_WINDOW`` seconds (the timing
  precision a deadline gets when the workers keep up). Embedded: a
  `ScheduleRunner` in this process. PostgreSQL + RabbitMQ: a `ScheduleForwarder`, an `OutboxRelay` and
  a `Consumer` of the command bus, all in this process. Poll interval ``POLL`` seconds everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import sqlalchemy as sa
import structlog

from cqrskit import Command, CommandBus, Context
from cqrskit.events import (
    CommandScheduler,
    Consumer,
    OutboxRelay,
    RabbitMQTransport,
    ScheduleForwarder,
    ScheduleRunner,
)
from cqrskit.processes import Deadline, ProcessManager, Reaction, Step, continues, deadline, starts
from cqrskit.sqlalchemy import Database, Transaction

POSTGRES_URL = os.environ.get("CQRSKIT_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
RABBITMQ_URL = os.environ.get("CQRSKIT_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
STEPS = int(os.environ.get("PROCESS_BENCH_STEPS", "2000"))
WRITERS = 8
DEADLINES = int(os.environ.get("PROCESS_BENCH_DEADLINES", "500"))
LIGHT_DEADLINES = 40
LIGHT_WINDOW = 4.0
POLL = 0.05


@attrs.frozen
class Begin(Command[None]):
    key: str
    due: float | None = None


@attrs.frozen
class Advance(Command[None]):
    key: str


@attrs.frozen
class Expire(Command[None]):
    key: str
    due: float


@attrs.frozen
class Counted:
    steps: int = 0


class Bench:
    """A process of one start, any number of steps, and an optional deadline that records its delay."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def reactions(self) -> Sequence[Reaction[Counted, Command[None]]]:
        return (
            starts(Begin, lambda c: c.key, self.begin),
            continues(Advance, lambda c: c.key, self.advance),
            deadline(Expire, lambda c: c.key, self.expire),
        )

    async def begin(self, command: Begin) -> Step[Counted, Command[None]]:
        if command.due is None:
            return Step(Counted())
        return Step(Counted(), deadlines=[Deadline(Expire(command.key, command.due), at=command.due)])

    async def advance(self, command: Advance, state: Counted) -> Step[Counted, Command[None]]:
        return Step(Counted(state.steps + 1))

    async def expire(self, command: Expire, state: Counted) -> Step[Counted, Command[None]]:
        self.delays.append(time.time() - command.due)
        return Step(state, complete=True)


async def steps_per_second(
    manager: ProcessManager[Counted, Command[None]], prefix: str, writers: int
) -> float:
    keys = [f"{prefix}-{n}" for n in range(STEPS // 2)]
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for key in keys:
        queue.put_nowait(Begin(key))
    for key in keys:
        queue.put_nowait(Advance(key))

    async def writer() -> None:
        while not queue.empty():
            await manager.handle(queue.get_nowait(), Context())

    started = time.perf_counter()
    # Starts first, then the steps: a step never finds its instance missing.
    await asyncio.gather(*(writer() for _ in range(writers)))
    return (2 * len(keys)) / (time.perf_counter() - started)


async def deadline_delays(
    manager: ProcessManager[Counted, Command[None]],
    bench: Bench,
    prefix: str,
    rate: float,
    *,
    count: int,
    window: float,
) -> list[float]:
    """Set `count` deadlines due over `window` seconds; return how late each ran, once all have."""
    bench.delays.clear()
    # The first deadline falls due only once every instance has started, so the delays measured are
    # the scheduler's, not the set-up's backlog.
    first = time.time() + 1.0 + 1.5 * count / rate
    for n in range(count):
        await manager.handle(Begin(f"{prefix}-d{n}", due=first + window * n / count), Context())
    deadline_at = time.monotonic() + 120 + window
    while len(bench.delays) < count:
        if time.monotonic() > deadline_at:
            raise TimeoutError(f"only {len(bench.delays)} of {count} deadlines ran")
        await asyncio.sleep(0.05)
    return list(bench.delays)


def report(label: str, rate: float, burst: list[float], light: list[float]) -> None:
    def percentiles(delays: list[float]) -> str:
        ordered = sorted(delays)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        return f"p50 {p50:>7.1f} ms  p99 {p99:>7.1f} ms"

    print(f"{label:<24} {rate:>6.0f} steps/s   burst: {percentiles(burst)}   light: {percentiles(light)}")


@contextlib.asynccontextmanager
async def running(*loops: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    try:
        yield
    finally:
        for loop in loops:
            stopped = loop.stop()
            if asyncio.iscoroutine(stopped):
                await stopped
        await asyncio.gather(*tasks, return_exceptions=True)


def wiring(
    database: Database, schema: str | None
) -> tuple[Bench, ProcessManager[Counted, Command[None]], CommandBus]:
    bench = Bench()
    scheduler = CommandScheduler(database, schema=schema)
    manager = ProcessManager(bench, name="bench", state=Counted, scheduler=scheduler)
    bus = CommandBus({Begin: manager, Advance: manager, Expire: manager}, [Transaction(database)])
    return bench, manager, bus


async def embedded() -> None:
    database = Database()
    try:
        bench, manager, bus = wiring(database, None)
        await manager.create_tables()
        # One writer: SQLite takes one at a time, and more only queue in its busy handler.
        rate = await steps_per_second(manager, "s", 1)
        runner = ScheduleRunner(CommandScheduler(database), bus, poll_interval=POLL)
        async with running(runner):
            burst = await deadline_delays(manager, bench, "e", rate, count=DEADLINES, window=1.0)
            light = await deadline_delays(
                manager, bench, "l", rate, count=LIGHT_DEADLINES, window=LIGHT_WINDOW
            )
        report("embedded (SQLite)", rate, burst, light)
    finally:
        await database.dispose()


async def postgres_rabbitmq() -> None:
    name = "cqrskit_bench_" + secrets.token_hex(4)
    database = Database(POSTGRES_URL, engine_options={"pool_size": WRITERS + 4})
    transport = RabbitMQTransport(RABBITMQ_URL, exchange=name)
    queue = f"{name}.commands"
    try:
        bench, manager, bus = wiring(database, name)
        await manager.create_tables()
        rate = await steps_per_second(manager, "s", WRITERS)
        scheduler = CommandScheduler(database, schema=name)
        consumer = Consumer(
            transport, bus, database, types={"Expire": Expire}, queue=queue, schema=name, prefetch=50
        )
        async with running(consumer):
            await asyncio.wait_for(consumer.started(), 30)
            forwarder = ScheduleForwarder(scheduler, poll_interval=POLL)
            relay = OutboxRelay(database, transport, schema=name, poll_interval=POLL)
            async with running(forwarder, relay):
                burst = await deadline_delays(manager, bench, "p", rate, count=DEADLINES, window=1.0)
                light = await deadline_delays(
                    manager, bench, "l", rate, count=LIGHT_DEADLINES, window=LIGHT_WINDOW
                )
        report("PostgreSQL + RabbitMQ", rate, burst, light)
    finally:
        with contextlib.suppress(Exception):
            await transport.delete(queue, exchanges=True)
        await transport.close()
        async with database.engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        await database.dispose()


def main() -> None:
    # Only warnings and errors: rendering a log line per step would be what this measures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(
        f"{STEPS} steps (1 task on SQLite, {WRITERS} on PostgreSQL); deadlines: a burst of {DEADLINES} "
        f"within 1 s, a light load of {LIGHT_DEADLINES} over {LIGHT_WINDOW:.0f} s; poll {POLL} s"
    )
    asyncio.run(embedded())
    asyncio.run(postgres_rabbitmq())


if __name__ == "__main__":
    main()
