"""A cached query answered through a bus vs a raw aiocache get of the same key.

Run: ``PYTHONPATH=src:. python -m benchmarks.cache`` (Redis at CQRSKIT_REDIS_URL, default
redis://127.0.0.1:6379/0; its rows are left out when it is not reachable).

Both sides use aiocache with ``timeout=None``; the bus has QueryCache as its only behaviour. Each
figure is the median over several runs of the mean time per call.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import attrs

from cqrskit import Query, QueryBus
from cqrskit.caching import AiocacheBackend, CachePolicy, QueryCache

REDIS_URL = os.environ.get("CQRSKIT_REDIS_URL", "redis://127.0.0.1:6379/0")
RUNS = 7


@attrs.frozen
class UserDto:
    id: int
    name: str
    email: str


@attrs.frozen
class GetUser(Query[UserDto]):
    user_id: int


@attrs.frozen
class GetTaggedUser(Query[UserDto]):
    user_id: int


class GetUserHandler:
    async def handle(self, query: Any, context: object) -> UserDto:
        return UserDto(query.user_id, "Ada", "ada@example.com")


async def _mean_us(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - started) / calls * 1e6


async def _compare(
    raw: Callable[[], Awaitable[Any]], through_bus: Callable[[], Awaitable[Any]], calls: int
) -> tuple[float, float]:
    """Median over RUNS of the mean microseconds per call of each side, runs interleaved."""
    await _mean_us(raw, calls // 10)  # warm up
    await _mean_us(through_bus, calls // 10)
    raw_means, bus_means = [], []
    for _ in range(RUNS):
        raw_means.append(await _mean_us(raw, calls))
        bus_means.append(await _mean_us(through_bus, calls))
    return statistics.median(raw_means), statistics.median(bus_means)


async def _rows(label: str, cache: Any, calls: int) -> list[tuple[str, float, float]]:
    query_cache = QueryCache(
        AiocacheBackend(cache),
        {
            GetUser: CachePolicy(ttl=600),
            GetTaggedUser: CachePolicy(ttl=600, tags=lambda q: [("user", str(q.user_id))]),
        },
    )
    bus = QueryBus({GetUser: GetUserHandler(), GetTaggedUser: GetUserHandler()}, [query_cache])
    rows = []
    for name, query in (("no tags", GetUser(42)), ("one tag", GetTaggedUser(42))):
        await bus.execute(query)
        second = await bus.execute(query)
        if second.cache_info is None or not second.cache_info.hit:
            raise RuntimeError("the benchmark must measure hits")
        key = query_cache.key_for(query)

        async def raw_get(key: str = key) -> Any:
            return await cache.get(key)

        async def bus_hit(query: Any = query) -> Any:
            return await bus.execute(query)

        raw, through_bus = await _compare(raw_get, bus_hit, calls)
        rows.append((f"{label}, {name}", raw, through_bus))
    return rows


def _redis_reachable() -> bool:
    parts = urlsplit(REDIS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=1):
            return True
    except OSError:
        return False


async def _redis_rows() -> list[tuple[str, float, float]]:
    from aiocache import RedisCache

    parts = urlsplit(REDIS_URL)
    namespace = "cqrskit_bench_" + secrets.token_hex(4)
    path = parts.path.strip("/")
    cache = RedisCache(
        endpoint=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(path) if path else 0,
        namespace=namespace,
        timeout=None,
    )
    try:
        return await _rows("redis", cache, 2_000)
    finally:
        keys = [key async for key in cache.client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await cache.client.delete(*keys)
        await cache.client.aclose()


async def _main() -> None:
    from aiocache import SimpleMemoryCache

    rows = await _rows("memory", SimpleMemoryCache(timeout=None), 20_000)
    if _redis_reachable():
        rows += await _redis_rows()
    else:
        print(f"(Redis not reachable at {REDIS_URL}: its rows are left out)")
    print(f"median of {RUNS} runs; microseconds per call")
    print()
    print("| backend, policy | raw aiocache get (us) | hit through the bus (us) | ratio | added (us) |")
    print("|---|---:|---:|---:|---:|")
    for label, raw, through_bus in rows:
        ratio, added = through_bus / raw, through_bus - raw
        print(f"| {label} | {raw:.2f} | {through_bus:.2f} | {ratio:.2f}x | {added:.2f} |")


def main() -> None:
    """Print the cache benchmark table."""
    asyncio.run(_main())


if __name__ == "__main__":
    main()
