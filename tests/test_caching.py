"""The aiocache adapter, the two-level cache and container configuration (keys: test_cache_keys.py)."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
import structlog
from aiocache import RedisCache, SimpleMemoryCache
from dependency_injector import containers, providers

from cqrskit import CommandBus, ConfigurationError, Context, QueryBus, Result
from cqrskit.caching import (
    AiocacheBackend,
    CacheInvalidation,
    CachePolicy,
    QueryCache,
    TwoLevelCache,
    as_backend,
    cache_from_url,
    memory_cache,
    redis_cache,
)
from cqrskit.testing import InMemoryCache
from tests.caching_app import (
    POLICIES,
    Container,
    GetUser,
    GetUserHandler,
    RenameUser,
    RenameUserHandler,
    UserDto,
    UserStore,
)


class TestAiocacheBackend:
    """The adapter speaks CacheBackend over aiocache and avoids its 0.12.3 quirks."""

    async def test_memory_operations(self) -> None:
        """get, multi_get, set, add and increment behave as the port says."""
        backend = memory_cache()
        await backend.set("a", [1, {"b": 2}], 60)
        assert await backend.get("a") == [1, {"b": 2}]
        assert list(await backend.multi_get(["a", "missing"])) == [[1, {"b": 2}], None]
        assert await backend.add("n", 10, 60) is True
        assert await backend.add("n", 11, 60) is False
        assert await backend.increment("n", 5, 60) == 15
        assert await backend.increment("fresh", 3, None) == 3
        await backend.close()

    def test_as_backend_wraps_aiocache_caches(self) -> None:
        """An aiocache cache is wrapped; a memory one without a timeout, a Redis one keeps its own."""
        memory = as_backend(SimpleMemoryCache(timeout=5))
        assert isinstance(memory, AiocacheBackend)
        assert "timeout=None" in repr(memory)
        redis = as_backend(RedisCache(timeout=2))
        assert "timeout=2.0" in repr(redis)

    def test_as_backend_keeps_a_backend(self) -> None:
        """An object with the CacheBackend methods is used as it is."""
        cache = InMemoryCache()
        assert as_backend(cache) is cache

    async def test_no_wait_for_per_call(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Even for a cache built with aiocache's default timeout, no call goes through asyncio.wait_for."""

        def no_wait_for(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("asyncio.wait_for was called")

        backend = as_backend(SimpleMemoryCache())  # aiocache's default timeout=5
        monkeypatch.setattr(asyncio, "wait_for", no_wait_for)
        await backend.set("k", 1, 1)
        await backend.get("k")
        await backend.multi_get(["k"])
        await backend.add("j", 1, 1)
        await backend.increment("j", 1, 1)

    async def test_a_timeout_bounds_each_call(self) -> None:
        """With a timeout, a call that takes too long raises TimeoutError (QueryCache then fails open)."""

        class Slow(SimpleMemoryCache):  # type: ignore[misc]
            async def _get(self, key: str, encoding: str = "utf-8", _conn: object = None) -> Any:
                await asyncio.sleep(10)

        with pytest.raises(TimeoutError):
            await AiocacheBackend(Slow(), timeout=0.01).get("k")


class TestTwoLevelCache:
    """An in-process level in front of a shared backend, stale by at most local_ttl."""

    async def test_reads_are_served_locally_until_local_ttl(self) -> None:
        """A second read does not reach the shared backend until local_ttl has passed."""
        now = [0.0]
        shared = InMemoryCache(clock=lambda: now[0])
        cache = TwoLevelCache(shared, local_ttl=2.0, clock=lambda: now[0])
        await shared.set("k", "v", 60)
        assert list(await cache.multi_get(["k", "absent"])) == ["v", None]
        shared.calls.clear()
        assert await cache.get("k") == "v"
        assert list(await cache.multi_get(["k"])) == ["v"]
        assert shared.calls == []
        now[0] += 2.0
        assert await cache.get("k") == "v"
        assert shared.calls == [("get", ("k",))]

    async def test_another_process_invalidation_is_seen_within_local_ttl(self) -> None:
        """A counter bumped elsewhere is read anew once the local copy is older than local_ttl."""
        now = [0.0]
        shared = InMemoryCache(clock=lambda: now[0])
        here = TwoLevelCache(shared, local_ttl=1.0, clock=lambda: now[0])
        elsewhere = TwoLevelCache(shared, local_ttl=1.0, clock=lambda: now[0])
        await here.add("tag", 100, 60)
        assert await here.get("tag") == 100
        await elsewhere.increment("tag", 5, 60)
        assert await here.get("tag") == 100  # stale, within the bound
        now[0] += 1.0
        assert await here.get("tag") == 105

    async def test_own_increments_are_seen_at_once(self) -> None:
        """This process's own invalidations update its local copy immediately."""
        cache = TwoLevelCache(InMemoryCache(), local_ttl=60)
        await cache.add("tag", 1, None)
        await cache.get("tag")
        await cache.increment("tag", 1, None)
        assert await cache.get("tag") == 2

    async def test_the_oldest_keys_go_first(self) -> None:
        """Beyond max_entries, the oldest local key is dropped (and read from shared again)."""
        shared = InMemoryCache()
        cache = TwoLevelCache(shared, local_ttl=60, max_entries=2)
        for key in ("a", "b", "c"):
            await cache.set(key, key, 60)
        shared.calls.clear()
        assert list(await cache.multi_get(["a", "b", "c"])) == ["a", "b", "c"]
        assert shared.calls == [("multi_get", ("a",))]

    async def test_query_cache_with_two_levels(self) -> None:
        """QueryCache over a TwoLevelCache answers repeated hits without reaching the shared level."""
        shared = InMemoryCache()
        query_cache = QueryCache(TwoLevelCache(shared, local_ttl=5), {GetUser: CachePolicy(ttl=60)})

        async def call_next(message: Any, context: Any) -> Any:
            return Result.success(UserDto("42", "Ada", "ada@example.com"))

        await query_cache(GetUser("42"), Context(), call_next)
        shared.calls.clear()
        hit = await query_cache(GetUser("42"), Context(), call_next)
        assert hit.cache_info is not None
        assert hit.cache_info.hit
        assert shared.calls == []

    def test_settings_are_checked(self) -> None:
        """local_ttl and max_entries must be positive."""
        with pytest.raises(ConfigurationError, match="local_ttl"):
            TwoLevelCache(InMemoryCache(), local_ttl=0)
        with pytest.raises(ConfigurationError, match="max_entries"):
            TwoLevelCache(InMemoryCache(), max_entries=0)


class TestConfiguration:
    """Memory by default; Redis when a URL is configured; two levels when asked."""

    def test_memory_when_no_url(self) -> None:
        """No URL gives an aiocache memory cache under the namespace."""
        backend = cache_from_url(None, namespace="app")
        assert isinstance(backend, AiocacheBackend)
        assert isinstance(backend.cache, SimpleMemoryCache)
        assert backend.cache.namespace == "app:"

    async def test_redis_when_a_url_is_given(self) -> None:
        """A redis:// URL gives a RedisCache with its host, port, db, password and namespace."""
        backend = cache_from_url("redis://user:s%40cret@cache.internal:6380/2", namespace="app")
        assert isinstance(backend, AiocacheBackend)
        cache = backend.cache
        assert isinstance(cache, RedisCache)
        assert (cache.endpoint, cache.port, cache.db, cache.password, cache.namespace) == (
            "cache.internal",
            6380,
            2,
            "s@cret",
            "app",
        )
        assert cache.timeout is None
        await backend.close()

    async def test_two_levels_when_local_ttl_is_set(self) -> None:
        """local_ttl puts a TwoLevelCache in front of Redis."""
        backend = cache_from_url("redis://127.0.0.1:6379/0", local_ttl=0.5)
        assert isinstance(backend, TwoLevelCache)
        assert backend.local_ttl == 0.5
        await backend.close()

    def test_other_schemes_are_refused(self) -> None:
        """A URL that is not redis:// or rediss:// is a configuration error."""
        with pytest.raises(ConfigurationError, match="redis://"):
            redis_cache("http://127.0.0.1:6379")

    def test_the_container_builds_memory_by_default(self) -> None:
        """A DeclarativeContainer with no cache_url configured wires a memory cache into both buses."""
        container = Container()
        cache = container.cache()
        assert isinstance(cache, AiocacheBackend)
        assert isinstance(cache.cache, SimpleMemoryCache)
        query_cache = container.query_bus().behaviours[0]
        invalidation = container.command_bus().behaviours[0]
        assert query_cache.backend is cache  # type: ignore[attr-defined]
        assert invalidation.backend is cache  # type: ignore[attr-defined]

    async def test_the_container_builds_redis_with_a_url(self) -> None:
        """With cache_url and cache_local_ttl configured, the container wires two levels over Redis."""
        container = Container()
        container.config.from_dict({"cache_url": "redis://127.0.0.1:6379/0", "cache_local_ttl": 1.0})
        cache = container.cache()
        assert isinstance(cache, TwoLevelCache)
        await cache.close()

    def test_a_container_may_pass_an_aiocache_cache_directly(self) -> None:
        """QueryCache(aiocache.Cache(aiocache.Cache.MEMORY), ...) works as the design shows."""
        import aiocache

        class Direct(containers.DeclarativeContainer):
            cache = providers.Singleton(aiocache.Cache, aiocache.Cache.MEMORY)
            query_cache = providers.Singleton(QueryCache, cache=cache, policies={GetUser: CachePolicy(ttl=5)})

        assert isinstance(Direct().query_cache().backend, AiocacheBackend)


class TestDeprecations:
    """aiocache 0.12.3's calls into deprecated redis-py APIs are avoided at the source."""

    async def test_no_deprecation_warnings_from_set_and_close(self) -> None:
        """Building a Redis cache and closing it warns of nothing (set is covered by the Redis tests)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            backend = redis_cache("redis://127.0.0.1:6379/0")
            await backend.close()
        assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []


class TestUnreachableRedis:
    """With Redis down, queries are answered by handlers and commands still succeed."""

    async def test_queries_and_commands_fail_open(self) -> None:
        """A cache pointing at a closed port: the query succeeds uncached, the command succeeds."""
        cache = redis_cache("redis://127.0.0.1:1/0", timeout=0.5)
        store = UserStore()
        queries = QueryBus(
            {GetUser: GetUserHandler(store)}, [QueryCache(cache, {GetUser: CachePolicy(ttl=5)})]
        )
        commands = CommandBus({RenameUser: RenameUserHandler(store)}, [CacheInvalidation(cache)])
        try:
            with structlog.testing.capture_logs() as logs:
                query = await queries.execute(GetUser("42"))
                command = await commands.execute(RenameUser("42", "Augusta"))
        finally:
            await cache.close()
        assert query.is_success
        assert query.data == UserDto("42", "Ada", "ada@example.com")
        assert command.is_success
        assert {entry["event"] for entry in logs} == {"cache_unavailable", "cache_invalidation_failed"}

    async def test_a_redis_that_never_answers_times_out_and_fails_open(self) -> None:
        """A server that accepts connections but never replies: each call gives up after `timeout`."""
        connections: list[asyncio.StreamWriter] = []

        async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)  # read nothing, answer nothing: a hung Redis

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        cache = redis_cache(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        store = UserStore()
        queries = QueryBus({GetUser: GetUserHandler(store)}, [QueryCache(cache, POLICIES)])
        commands = CommandBus({RenameUser: RenameUserHandler(store)}, [CacheInvalidation(cache)])
        try:
            with structlog.testing.capture_logs() as logs:
                query = await asyncio.wait_for(queries.execute(GetUser("42")), timeout=10)
                command = await asyncio.wait_for(commands.execute(RenameUser("42", "Augusta")), timeout=10)
        finally:
            await cache.close()
            for writer in connections:
                writer.close()
            server.close()
            await server.wait_closed()
        assert connections  # the cache did reach the silent server
        assert query.is_success
        assert query.data == UserDto("42", "Ada", "ada@example.com")
        assert query.cache_info is not None
        assert not query.cache_info.hit
        assert command.is_success
        failures = [entry for entry in logs if entry["event"] == "cache_unavailable"]
        assert failures
        assert all("Timeout" in entry["error_type"] for entry in failures)
        assert "cache_invalidation_failed" in {entry["event"] for entry in logs}
