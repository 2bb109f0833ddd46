"""A container for the shutdown test: SQLite, the outbox as the queue, and a Redis cache.

``python -m cqrskit consume tests.integration.operate.cached_app:Container`` with ``CACHED_*``
environment variables: ``CACHED_DATABASE_URL`` (a SQLite file), ``CACHED_REDIS_URL``,
``CACHED_PREFIX`` (the cache's key prefix and the name its Redis connections give themselves) and
``CACHED_GATE`` (a file path). The one subscriber writes ``seen:<id>`` to the cache for each event,
so the process holds Redis connections while it runs. The container's one `providers.Resource`, the
gate, is shut down last: it waits for the ``CACHED_GATE`` file to exist, which keeps the process alive
after it has closed everything else, so a test can look at Redis before the process exits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiocache
import attrs
from dependency_injector import containers, providers

from cqrskit import Context
from cqrskit.caching import AiocacheBackend, CacheBackend
from cqrskit.events import Consumer, Event, EventBus, LocalTransport
from cqrskit.sqlalchemy import Database

GATE_WAIT = 60.0  # seconds: never hang a broken test for longer


@attrs.frozen
class Seen(Event):
    """The test's event."""

    id: str


class Remember:
    """The subscriber: writes ``seen:<id>`` to the cache."""

    def __init__(self, cache: CacheBackend, gate: str) -> None:
        self.cache = cache
        self.gate = gate  # taken so that the gate resource is initialised with the bus

    async def handle(self, event: Seen, context: Context) -> None:
        await self.cache.set(f"seen:{event.id}", True, ttl=300)


def redis_cache(url: str, prefix: str) -> AiocacheBackend:
    """A Redis cache whose connections are named `prefix` (CLIENT SETNAME), keys prefixed with it."""
    parts = urlsplit(url)
    cache = aiocache.RedisCache(
        endpoint=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(parts.path.strip("/") or 0),
        namespace=prefix,
        timeout=None,
        connection_pool_kwargs={"client_name": prefix},
    )
    return AiocacheBackend(cache, timeout=5.0)


def gate(path: str) -> Iterator[str]:
    """A resource whose shutdown waits (up to `GATE_WAIT` seconds) for the file `path` to exist."""
    yield path
    deadline = time.monotonic() + GATE_WAIT
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the process has nothing else left to do: blocking is fine here


def _env(name: str) -> str:
    return os.environ[name]


class Container(containers.DeclarativeContainer):
    """A consumer of the outbox on SQLite whose subscriber writes to a Redis cache."""

    database = providers.Singleton(Database, providers.Callable(_env, "CACHED_DATABASE_URL"))
    cache = providers.Singleton(
        redis_cache, providers.Callable(_env, "CACHED_REDIS_URL"), providers.Callable(_env, "CACHED_PREFIX")
    )
    gate = providers.Resource(gate, providers.Callable(_env, "CACHED_GATE"))
    transport = providers.Singleton(LocalTransport, database=database, poll_interval=0.05)
    event_bus = providers.Singleton(
        EventBus,
        handlers=providers.Dict(
            {Seen: providers.Dict(remember=providers.Factory(Remember, cache=cache, gate=gate))}
        ),
    )
    consumer = providers.Singleton(
        Consumer,
        transport=transport,
        bus=event_bus,
        database=database,
        types=providers.Object({"Seen": Seen}),
        queue="seen",
    )
