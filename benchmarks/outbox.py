"""Events per second from commit to consumer effect through PostgreSQL, the relay and RabbitMQ.

Run: ``PYTHONPATH=src:. python -m benchmarks.outbox`` (PostgreSQL and RabbitMQ at
``CQRSKIT_POSTGRES_URL`` / ``CQRSKIT_RABBITMQ_URL``, defaults 127.0.0.1). Everything runs in this one
process on its own schema, exchange and queue, removed at the end.

Four writers commit ``EVENTS`` events through `OutboxPublisher`, ``PER_TRANSACTION`` per transaction,
as fast as they can, while 1 or 2 `OutboxRelay` instances (each with its own engine and broker
connection, as separate processes would have) move them to RabbitMQ and one `Consumer` (inbox row
plus an effect row per event, 8 messages at a time) handles them. Throughput is events divided by the
time from the first commit to the last effect; latency is, per event, from its transaction's commit
to its subscriber's effect (inside the consumer's transaction). Each row is the median of ``REPEATS``
runs; a run that takes more than ``RUN_LIMIT`` seconds is abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import time
from typing import Any

import attrs
import sqlalchemy as sa
import structlog

from cqrskit import Context
from cqrskit.events import (
    Consumer,
    Event,
    EventBus,
    OutboxPublisher,
    OutboxRelay,
    RabbitMQTransport,
    create_event_tables,
)
from cqrskit.sqlalchemy import Database

POSTGRES_URL = os.environ.get("CQRSKIT_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
RABBITMQ_URL = os.environ.get("CQRSKIT_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
EVENTS = 2000
PER_TRANSACTION = 10
WRITERS = 4
REPEATS = 3
RUN_LIMIT = 60.0
KEYS = 64


@attrs.frozen
class Tick(Event):
    n: int
    key: str | None

    def ordering_key(self) -> str | None:
        return self.key


class Effect:
    def __init__(self, database: Database, table: sa.Table, done: dict[int, float]) -> None:
        self.database, self.table, self.done = database, table, done

    async def handle(self, event: Tick, context: Context) -> None:
        await self.database.session.execute(sa.insert(self.table).values(n=event.n))
        self.done[event.n] = time.perf_counter()


async def one_run(relay_count: int, keyed: bool) -> tuple[float, float, float]:
    name = "cqrskit_bench_" + secrets.token_hex(4)
    database = Database(POSTGRES_URL, engine_options={"pool_size": 10})
    effects = sa.Table("effects", sa.MetaData(schema=name), sa.Column("n", sa.Integer, primary_key=True))
    transport = RabbitMQTransport(RABBITMQ_URL, exchange=name)
    extras: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []
    committed: dict[int, float] = {}
    done: dict[int, float] = {}
    try:
        await create_event_tables(database, name)
        async with database.engine.begin() as connection:
            await connection.run_sync(effects.metadata.create_all)
        consumer = Consumer(
            transport,
            EventBus({Tick: {"effect": Effect(database, effects, done)}}),
            database,
            types={"Tick": Tick},
            queue=f"{name}.q",
            schema=name,
            concurrency=8,
            prefetch=64,
        )
        tasks.append(asyncio.create_task(consumer.run()))
        await asyncio.wait_for(consumer.started(), 30)
        for _ in range(relay_count):
            relay_database = Database(POSTGRES_URL)
            relay_transport = RabbitMQTransport(RABBITMQ_URL, exchange=name)
            extras += [relay_database, relay_transport]
            relay = OutboxRelay(relay_database, relay_transport, schema=name, poll_interval=0.02)
            tasks.append(asyncio.create_task(relay.run()))
        publisher = OutboxPublisher(database, schema=name)

        async def writer(start: int) -> None:
            for first in range(start, EVENTS, PER_TRANSACTION * WRITERS):
                batch = range(first, min(first + PER_TRANSACTION, EVENTS))
                async with database.transaction():
                    for n in batch:
                        await publisher.publish(Tick(n, f"k{n % KEYS}" if keyed else None))
                now = time.perf_counter()
                for n in batch:
                    committed[n] = now

        began = time.perf_counter()
        await asyncio.gather(*(writer(w * PER_TRANSACTION) for w in range(WRITERS)))
        deadline = began + RUN_LIMIT
        while len(done) < EVENTS:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {len(done)} of {EVENTS} events handled in {RUN_LIMIT}s")
            await asyncio.sleep(0.01)
        first_commit = min(committed.values())
        elapsed = max(done.values()) - first_commit
        latencies = sorted((done[n] - committed[n]) * 1000 for n in range(EVENTS))
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        return EVENTS / elapsed, p50, p99
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for extra in extras:
            await (extra.close() if isinstance(extra, RabbitMQTransport) else extra.dispose())
        with contextlib.suppress(Exception):
            await transport.delete(f"{name}.q", exchanges=True)
        await transport.close()
        async with database.engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        await database.dispose()


async def run() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    print(f"{EVENTS} events, {WRITERS} writers x {PER_TRANSACTION} events per transaction, median of {REPEATS}")
    print()
    print("| events | relays | events/s | p50 latency (ms) | p99 latency (ms) |")
    print("|---|---:|---:|---:|---:|")
    for keyed in (False, True):
        for relays in (1, 2):
            runs = [await one_run(relays, keyed) for _ in range(REPEATS)]
            rate = statistics.median(r[0] for r in runs)
            p50 = statistics.median(r[1] for r in runs)
            p99 = statistics.median(r[2] for r in runs)
            label = f"keyed ({KEYS} keys)" if keyed else "no key"
            print(f"| {label} | {relays} | {rate:,.0f} | {p50:.1f} | {p99:.1f} |")


def main() -> None:
    """Run the benchmark and print its table."""
    asyncio.run(run())


if __name__ == "__main__":
    main()
