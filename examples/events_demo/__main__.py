"""Run the events demo: commands commit, the relay and the worker catch the read model up.

``python -m examples.events_demo`` runs the API side and starts ``python -m examples.events_demo
relay`` and ``python -m examples.events_demo worker`` as processes of their own (with Redis as the
shared cache; without Redis all three run as tasks of one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis.asyncio
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
REDIS_URL = os.environ.get("CQRSKIT_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]
SIDES = ("relay", "worker")


def reachable(url: str, port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or port), timeout=1):
            return True
    except OSError:
        return False


def make_container(name: str, cache_url: str | None) -> Container:
    """The container every side builds: the same configuration, so the same schema, exchange and queue."""
    container = Container()
    container.config.from_dict(
        {
            "database_url": POSTGRES_URL,
            "rabbitmq_url": RABBITMQ_URL,
            "cache_url": cache_url,
            "schema": name,
            "exchange": name,
            "queue": f"{name}.user-stats",
        }
    )
    return container


async def demo(processes: bool | None = None) -> None:
    """Run the API side here; the relay and the worker in processes of their own (or as tasks here).

    With `processes` (the default when Redis is reachable) the API and the worker share a Redis cache,
    so the worker's invalidation reaches the API's cached GetUserStats.
    """
    if processes is None:
        processes = reachable(REDIS_URL, 6379)
    name = "events_demo_" + secrets.token_hex(4)
    cache_url = REDIS_URL if processes else None
    container = make_container(name, cache_url)
    database, transport = container.database(), container.transport()
    tasks: list[asyncio.Task[None]] = []
    children: list[asyncio.subprocess.Process] = []
    try:
        await create_event_tables(database, name)
        await container.tables().create(database)
        if processes:
            # The worker first: its queue exists before anything is relayed.
            for side in ("worker", "relay"):
                await start_side(side, name, cache_url, children)
            where = "processes " + ", ".join(str(child.pid) for child in children)
        else:
            consumer, relay = container.consumer(), container.relay()
            tasks.append(asyncio.create_task(consumer.run()))
            await asyncio.wait_for(consumer.started(), 30)
            tasks.append(asyncio.create_task(relay.run()))
            where = "tasks of this process"
        print(f"schema, exchange and queue named {name}; worker and relay run as {where}")

        await run_commands_and_watch(container)
    finally:
        for child in children:
            await stop_side(child)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await transport.delete(f"{name}.user-stats", exchanges=True)
        await transport.close()
        await container.cache().close()
        if cache_url is not None:
            await delete_cache_keys(cache_url, name)
        async with database.engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        await database.dispose()


async def start_side(
    side: str, name: str, cache_url: str | None, children: list[asyncio.subprocess.Process]
) -> None:
    """Start ``python -m examples.events_demo <side>`` and wait until it says it is ready."""
    path = [str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "EVENTS_DEMO_NAME": name,
        "EVENTS_DEMO_CACHE_URL": cache_url or "",
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.events_demo", side, env=env, stdout=asyncio.subprocess.PIPE
    )
    children.append(child)
    assert child.stdout is not None  # noqa: S101 - asked for with PIPE
    line = await asyncio.wait_for(child.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise RuntimeError(f"the {side} process did not start (exit code {child.returncode})")


async def stop_side(child: asyncio.subprocess.Process) -> None:
    """Ask a side process to stop (SIGTERM), and kill it if it has not within 30 seconds."""
    if child.returncode is None:
        child.terminate()
    try:
        await asyncio.wait_for(child.wait(), 30)
    except TimeoutError:
        child.kill()
        await child.wait()


async def run_side(side: str) -> None:
    """The relay or the worker process: run until SIGTERM, then stop cleanly."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    container = make_container(
        os.environ["EVENTS_DEMO_NAME"], os.environ.get("EVENTS_DEMO_CACHE_URL") or None
    )
    try:
        if side == "worker":
            consumer = container.consumer()
            task = asyncio.create_task(consumer.run())
            await asyncio.wait_for(consumer.started(), 30)
            print("ready", flush=True)
            await stop.wait()
            await consumer.stop()
        else:
            relay = container.relay()
            task = asyncio.create_task(relay.run())
            await asyncio.wait_for(relay.started(), 30)
            print("ready", flush=True)
            await stop.wait()
            relay.stop()
        await task
    finally:
        await container.transport().close()
        await container.cache().close()
        await container.database().dispose()


async def delete_cache_keys(url: str, namespace: str) -> None:
    """Delete the demo's keys from Redis."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


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
    side = sys.argv[1] if len(sys.argv) > 1 else None
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    if side in SIDES:
        asyncio.run(run_side(side))
        return
    if not (reachable(POSTGRES_URL, 5432) and reachable(RABBITMQ_URL, 5672)):
        print("the events demo needs PostgreSQL and RabbitMQ (CQRSKIT_POSTGRES_URL, CQRSKIT_RABBITMQ_URL)")
        sys.exit(0)
    asyncio.run(demo())


if __name__ == "__main__":
    main()
