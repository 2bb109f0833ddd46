"""QueryCache and CacheInvalidation on a real Redis, shared by two caches and by a second process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from hypothesis import HealthCheck, given, settings

from cqrskit import CommandBus, OperationStatus, QueryBus
from cqrskit.caching import (
    CacheBackend,
    CacheInvalidation,
    CachePolicy,
    QueryCache,
    TwoLevelCache,
    redis_cache,
)
from tests import services
from tests.caching_app import (
    POLICIES,
    Container,
    GetUser,
    GetUserHandler,
    ListUsers,
    ListUsersHandler,
    RenameUser,
    RenameUserHandler,
    UserDto,
    UserStore,
)
from tests.test_cache_roundtrip import ReturnValue, dto_cases, query_for

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
INVALIDATOR = Path(__file__).with_name("cache_invalidator.py")


async def drop_keys(redis_url: str, namespace: str) -> None:
    """Delete every key under `namespace` (this test's own)."""
    await services.drop_redis_keys(redis_url, f"{namespace}:")


class Process:
    """What one process holds: a store, and buses over its own cache instance."""

    def __init__(self, cache: CacheBackend, store: UserStore | None = None) -> None:
        self.store = store if store is not None else UserStore()
        self.queries = QueryBus(
            {GetUser: GetUserHandler(self.store), ListUsers: ListUsersHandler(self.store)},
            [QueryCache(cache, POLICIES)],
        )
        self.commands = CommandBus({RenameUser: RenameUserHandler(self.store)}, [CacheInvalidation(cache)])

    async def hit(self, query: object) -> bool:
        result = await self.queries.execute(query)  # type: ignore[arg-type]
        assert result.cache_info is not None
        return result.cache_info.hit


class TestSharedRedis:
    """Two cache instances on one Redis see each other's entries and invalidations."""

    async def test_entries_are_shared(self, caches: Callable[[], CacheBackend]) -> None:
        """What one instance stores, the other reads back as the same DTO."""
        first, second = Process(caches()), Process(caches())
        await first.queries.execute(GetUser("42"))
        result = await second.queries.execute(GetUser("42"))
        assert result.cache_info is not None
        assert result.cache_info.hit
        assert isinstance(result.data, UserDto)
        assert result.data == UserDto("42", "Ada", "ada@example.com")
        assert second.store.reads["GetUser"] == 0

    async def test_invalidations_are_shared(self, caches: Callable[[], CacheBackend]) -> None:
        """A command on one instance makes the other's next read a miss."""
        store = UserStore()
        first, second = Process(caches(), store), Process(caches(), store)
        await first.queries.execute(GetUser("42"))
        await first.queries.execute(ListUsers())
        assert (await second.commands.execute(RenameUser("42", "Augusta"))).is_success
        after = await first.queries.execute(GetUser("42"))
        assert after.cache_info is not None
        assert not after.cache_info.hit
        assert after.data.name == "Augusta"
        assert not await first.hit(ListUsers())

    async def test_pages_round_trip_through_redis(self, caches: Callable[[], CacheBackend]) -> None:
        """A Page[UserDto] comes back from Redis as a Page of UserDto with its pagination."""
        first, second = Process(caches()), Process(caches())
        original = await first.queries.execute(ListUsers(page_size=1))
        cached = await second.queries.execute(ListUsers(page_size=1))
        assert cached.cache_info is not None
        assert cached.cache_info.hit
        assert cached.data == original.data
        assert isinstance(cached.data.items[0], UserDto)
        assert cached.pagination == original.pagination

    async def test_entries_are_json_any_process_can_read(
        self, caches: Callable[[], CacheBackend], redis_url: str, unique_name: str
    ) -> None:
        """The stored entry is JSON: the unstructured value and the tag versions it was read under."""
        process = Process(caches())
        result = await process.queries.execute(GetUser("42"))
        assert result.cache_info is not None
        client = redis.from_url(redis_url)
        try:
            raw = await client.get(f"{unique_name}:{result.cache_info.key}")
            ttl = await client.ttl(f"{unique_name}:{result.cache_info.key}")
        finally:
            await client.aclose()
        value, versions = json.loads(raw)
        assert value == {"id": "42", "name": "Ada", "email": "ada@example.com"}
        assert len(versions) == 2
        assert all(isinstance(version, int) for version in versions)
        assert 0 < ttl <= 300

    async def test_concurrent_misses_load_once_per_process(self, caches: Callable[[], CacheBackend]) -> None:
        """100 concurrent identical misses on Redis run the handler once."""
        process = Process(caches())
        results = await asyncio.gather(*(process.queries.execute(GetUser("42")) for _ in range(100)))
        assert process.store.reads["GetUser"] == 1
        assert all(result.status is OperationStatus.SUCCESS for result in results)

    async def test_the_container_with_a_redis_url(self, redis_url: str, unique_name: str) -> None:
        """A container configured with cache_url caches in Redis and invalidates there."""
        container = Container()
        container.config.from_dict({"cache_url": redis_url, "cache_namespace": unique_name})
        client = redis.from_url(redis_url)
        try:
            queries, commands = container.query_bus(), container.command_bus()
            await queries.execute(GetUser("42"))
            assert await client.exists(f'{unique_name}:tests.caching_app.GetUser:v1:{{"user_id":"42"}}')
            await commands.execute(RenameUser("42", "Augusta"))
            assert (await queries.execute(GetUser("42"))).data.name == "Augusta"
            assert container.store().reads["GetUser"] == 2
        finally:
            await container.cache().close()
            await client.aclose()
            await drop_keys(redis_url, unique_name)


class GatedGetUser:
    """A GetUser handler that waits for `release` before answering."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def handle(self, query: GetUser, context: object) -> UserDto:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return UserDto(query.user_id, "Ada", "ada@example.com")


class WatchLock:
    """Delegates to a backend and says when the load lock was found taken."""

    def __init__(self, backend: CacheBackend) -> None:
        self.backend = backend
        self.refused = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def add(self, key: str, value: Any, ttl: float | None) -> bool:
        stored = await self.backend.add(key, value, ttl)
        if not stored and key.startswith("lock:"):
            self.refused.set()
        return stored


class TestLockAcrossProcesses:
    """With lock_ttl, cache instances sharing Redis run one handler for concurrent misses."""

    async def test_the_second_instance_waits_for_the_first(self, caches: Callable[[], CacheBackend]) -> None:
        """B misses while A loads, finds A's lock in Redis, and answers from A's entry."""
        handler_a, handler_b = GatedGetUser(), GatedGetUser()
        watched = WatchLock(caches())
        bus_a = QueryBus({GetUser: handler_a}, [QueryCache(caches(), POLICIES, lock_ttl=10, lock_poll=0.005)])
        bus_b = QueryBus({GetUser: handler_b}, [QueryCache(watched, POLICIES, lock_ttl=10, lock_poll=0.005)])
        a = asyncio.create_task(bus_a.execute(GetUser("42")))
        await handler_a.started.wait()
        b = asyncio.create_task(bus_b.execute(GetUser("42")))
        await asyncio.wait_for(watched.refused.wait(), timeout=10)
        handler_a.release.set()
        result_a, result_b = await a, await b
        assert handler_b.calls == 0
        assert result_b.data == result_a.data
        assert result_b.cache_info is not None
        assert result_b.cache_info.hit


async def invalidate_in_another_process(redis_url: str, namespace: str, kind: str, entity_id: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(INVALIDATOR),
        redis_url,
        namespace,
        kind,
        entity_id,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == f"invalidated {kind} {entity_id}"


class TestAnotherProcess:
    """A real second process invalidates through Redis and this one sees it."""

    async def test_an_invalidation_from_another_process(
        self, caches: Callable[[], CacheBackend], redis_url: str, unique_name: str
    ) -> None:
        """GetUser(42) is a hit, another process touches user 42, GetUser(42) is a miss; user 7 stays."""
        process = Process(caches())
        await process.queries.execute(GetUser("42"))
        await process.queries.execute(GetUser("7"))
        assert await process.hit(GetUser("42"))
        await invalidate_in_another_process(redis_url, unique_name, "user", "42")
        assert not await process.hit(GetUser("42"))
        assert await process.hit(GetUser("7"))

    async def test_with_an_in_process_level_the_change_arrives_within_local_ttl(
        self, caches: Callable[[], CacheBackend], redis_url: str, unique_name: str
    ) -> None:
        """With a TwoLevelCache, another process's invalidation is seen once local_ttl has passed."""
        process = Process(TwoLevelCache(caches(), local_ttl=0.2))
        await process.queries.execute(GetUser("42"))
        await invalidate_in_another_process(redis_url, unique_name, "user", "42")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await process.hit(GetUser("42")):
            assert loop.time() < deadline, "the invalidation never reached the in-process level"
            await asyncio.sleep(0.02)
        assert process.store.reads["GetUser"] == 2


class TestRoundTripThroughRedis:
    """Hypothesis-generated DTOs come back from a real Redis equal and of the same class."""

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(case=dto_cases())
    def test_generated_dtos_survive_redis(
        self, case: tuple[type, Any], redis_url: str, unique_name: str
    ) -> None:
        """Each example is stored in Redis by one cache instance and read back by another."""
        dto, value = case

        async def run() -> Any:
            writer, reader = (
                redis_cache(redis_url, namespace=unique_name),
                redis_cache(redis_url, namespace=unique_name),
            )
            try:
                query_type = query_for(dto)
                policies = {query_type: CachePolicy(ttl=60)}
                await QueryBus({query_type: ReturnValue(value)}, [QueryCache(writer, policies)]).execute(
                    query_type(1)
                )
                result = await QueryBus(
                    {query_type: ReturnValue(None)}, [QueryCache(reader, policies)]
                ).execute(query_type(1))
                assert result.cache_info is not None
                assert result.cache_info.hit
                return result.data
            finally:
                await writer.close()
                await reader.close()
                await drop_keys(redis_url, unique_name)

        cached = asyncio.run(run())
        assert type(cached) is dto
        assert cached == value
