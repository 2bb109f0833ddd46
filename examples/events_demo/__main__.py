"""Run the events demo: commands commit, the relay and the worker catch the read model up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import time
from urllib.parse import urlsplit

import sqlalchemy as sa
import structlog

from cqrskit.events import create_event_tables
from examples.events_demo.app import (
    Container,
    CreateUser,
    DeleteUser,
    GetUserStats,
    UpdateUser,
    UserStats,
)

POSTGRES_URL = os.environ.get("CQRSKIT_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
RABBITMQ_URL = os.environ.get("CQRSKIT_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def reachable(url: str, port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or port), timeout=1):
            return True
    except OSError:
        return False


async def demo() -> None:
    name = "events_demo_" + secrets.token_hex(4)
    container = Container()
    container.config.from_dict(
        {
            "database_url": POSTGRES_URL,
            "rabbitmq_url": RABBITMQ_URL,
            "schema": name,
            "exchange": name,
            "queue": f"{name}.user-stats",
        }
    )
    database, transport = container.database(), container.transport()
    tasks: list[asyncio.Task[None]] = []
    try:
        await create_event_tables(database, name)
        await container.tables().create(database)
        consumer, relay = container.consumer(), container.relay()
        tasks.append(asyncio.create_task(consumer.run()))
        await asyncio.wait_for(consumer.started(), 30)  # the worker's queue exists before anything is sent
        tasks.append(asyncio.create_task(relay.run()))
        print(f"schema, exchange and queue named {name}")

        await run_commands_and_watch(container)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await transport.delete(f"{name}.user-stats", exchanges=True)
        await transport.close()
        async with database.engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        await database.dispose()


async def run_commands_and_watch(container: Container) -> None:
    """Commit eight commands, then print the read model each time it changes until it caught up."""
    commands, queries = container.command_bus(), container.query_bus()
    before = (await queries.execute(GetUserStats())).unwrap()
    print(f"read model before: {show(before)}")
    began = time.monotonic()
    ids = [(await commands.execute(CreateUser(f"user{i}@example.com"))).unwrap() for i in range(5)]
    (await commands.execute(UpdateUser(ids[0], "ada@example.com"))).unwrap()
    (await commands.execute(UpdateUser(ids[1], "bob@example.com"))).unwrap()
    (await commands.execute(DeleteUser(ids[4]))).unwrap()
    print("8 commands committed (5 created, 2 updated, 1 deleted); the read model catches up:")
    expected = UserStats(total=4, created=5, updated=2, deleted=1)
    last = None
    while True:
        result = await queries.execute(GetUserStats())
        stats = result.unwrap()
        if stats != last:
            hit = " (from the cache)" if result.cache_info is not None and result.cache_info.hit else ""
            print(f"  +{(time.monotonic() - began) * 1000:6.0f} ms  {show(stats)}{hit}")
            last = stats
        if stats == expected:
            break
        if time.monotonic() - began > 30:
            raise TimeoutError("the read model did not catch up within 30 s")
        await asyncio.sleep(0.01)
    again = await queries.execute(GetUserStats())
    if again.cache_info is not None:
        print(f"asked again: {show(again.unwrap())}, cache hit: {again.cache_info.hit}")
    print("caught up.")


def show(stats: UserStats) -> str:
    return f"total={stats.total} created={stats.created} updated={stats.updated} deleted={stats.deleted}"


def main() -> None:
    if not (reachable(POSTGRES_URL, 5432) and reachable(RABBITMQ_URL, 5672)):
        print("the events demo needs PostgreSQL and RabbitMQ (CQRSKIT_POSTGRES_URL, CQRSKIT_RABBITMQ_URL)")
        sys.exit(0)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    asyncio.run(demo())


if __name__ == "__main__":
    main()
