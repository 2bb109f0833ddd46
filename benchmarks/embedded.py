"""The embedded default's delivery latency: from COMMIT to the subscriber running, on SQLite.

``python -m benchmarks embedded``. A command bus with `Transaction` and an `OutboxPublisher` woken into a
`LocalTransport` consumer, in one process on a SQLite file, no broker. Each command publishes one event;
the handler notes the moment its transaction commits (work deferred until commit), the subscriber
the moment it starts. Commands run one after the other, each waiting for its event, so this is the
latency at a light load. Prints p50, p90, p99 and max in milliseconds.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import attrs

from cqrskit import Command, CommandBus, Context
from cqrskit.behaviours import Retry
from cqrskit.events import Consumer, Event, EventBus, LocalTransport, OutboxPublisher
from cqrskit.scope import defer_until_commit
from cqrskit.sqlalchemy import Database, Transaction

COMMANDS = 300
COMMAND_MS: list[float] = []


@attrs.frozen
class Pinged(Event):
    number: int


@attrs.frozen
class Ping(Command[None]):
    number: int


class PingHandler:
    def __init__(self, events: OutboxPublisher, committed: dict[int, float]) -> None:
        self.events, self.committed = events, committed

    async def handle(self, command: Ping, context: Context) -> None:
        await self.events.publish(Pinged(command.number))

        async def note() -> None:
            self.committed[command.number] = time.perf_counter()

        defer_until_commit(note)


class Subscriber:
    def __init__(self) -> None:
        self.seen: dict[int, asyncio.Future[float]] = {}

    async def handle(self, event: Pinged, context: Context) -> None:
        future = self.seen.get(event.number)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())


async def run() -> list[float]:
    with tempfile.TemporaryDirectory() as directory:
        database = Database(f"sqlite+aiosqlite:///{Path(directory) / 'bench.sqlite3'}")
        transport = LocalTransport(database)
        await transport.create_tables()
        publisher = OutboxPublisher(database, wake=transport.wake)
        committed: dict[int, float] = {}
        subscriber = Subscriber()
        bus = CommandBus(
            {Ping: PingHandler(publisher, committed)}, [Retry(), Transaction(database), publisher]
        )
        consumer = Consumer(
            transport,
            EventBus({Pinged: {"bench": subscriber}}),
            database,
            types={"Pinged": Pinged},
            queue="bench",
        )
        task = asyncio.create_task(consumer.run())
        await consumer.started()
        latencies: list[float] = []
        try:
            for number in range(COMMANDS):
                seen = subscriber.seen[number] = asyncio.get_running_loop().create_future()
                began = time.perf_counter()
                (await bus.execute(Ping(number))).unwrap()
                COMMAND_MS.append((time.perf_counter() - began) * 1000)
                started = await asyncio.wait_for(seen, 10)
                latencies.append((started - committed[number]) * 1000)
        finally:
            await consumer.stop()
            await task
            await database.dispose()
        return latencies[20:]  # the first ones warm the connections up


def main() -> None:
    latencies = sorted(asyncio.run(run()))
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"embedded delivery, SQLite, {len(latencies)} events, COMMIT -> subscriber starts:")
    print(
        f"  p50 {quantiles[49]:.2f} ms  p90 {quantiles[89]:.2f} ms  p99 {quantiles[98]:.2f} ms  "
        f"max {latencies[-1]:.2f} ms"
    )
    command = statistics.median(COMMAND_MS)
    print(f"  for scale, one command (its own transaction and COMMIT): p50 {command:.2f} ms")


if __name__ == "__main__":
    main()
