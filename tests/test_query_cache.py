"""QueryCache and CachePolicy: hits, misses, expiry, keys, single flight and failing open."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
import structlog

from cqrskit import (
    AffectedEntity,
    Command,
    CommandBus,
    ConfigurationError,
    Context,
    NotFoundError,
    OperationStatus,
    Page,
    Query,
    QueryBus,
    Result,
)
from cqrskit.caching import CacheInvalidation, CachePolicy, QueryCache, memory_cache
from cqrskit.testing import FailingCache, InMemoryCache
from tests.caching_app import (
    POLICIES,
    Container,
    FindUserByEmail,
    GetUser,
    GetUserHandler,
    ListUsers,
    UserDto,
    UserStore,
)

CONTEXT = Context(operation_id="op-1")
ADA = UserDto("42", "Ada", "ada@example.com")


class FakeNext:
    """A call_next that returns `result` (or raises `error`) and counts its calls."""

    def __init__(self, result: Result[Any] | None = None, error: BaseException | None = None) -> None:
        self.result = result if result is not None else Result.success(ADA)
        self.error = error
        self.calls = 0

    async def __call__(self, message: Any, context: Context) -> Result[Any]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result


def get_user_cache(cache: object, **policy: Any) -> QueryCache:
    return QueryCache(cache, {GetUser: CachePolicy(**({"ttl": 60} | policy))})


class TestCachePolicy:
    """CachePolicy refuses settings that cannot work."""

    def test_defaults(self) -> None:
        """A policy needs only a ttl; the rest defaults to every field, no tags, version 1."""
        policy = CachePolicy(ttl=30)
        assert (policy.vary_by, policy.cache_null_results, policy.tags, policy.key, policy.version) == (
            None,
            False,
            None,
            None,
            1,
        )

    @pytest.mark.parametrize("ttl", [0, -1, "60", True])
    def test_a_ttl_must_be_a_positive_number_or_a_callable(self, ttl: Any) -> None:
        """Zero, negative, text and booleans are refused as a ttl."""
        with pytest.raises(ValueError, match="ttl"):
            CachePolicy(ttl=ttl)

    def test_vary_by_refuses_a_bare_string(self) -> None:
        """vary_by='user_id' would vary by each letter: it is refused."""
        with pytest.raises(TypeError, match="sequence of field names"):
            CachePolicy(ttl=1, vary_by="user_id")  # type: ignore[arg-type]

    def test_vary_by_becomes_a_tuple(self) -> None:
        """A list of field names is kept as a tuple, so the policy stays immutable."""
        assert CachePolicy(ttl=1, vary_by=["user_id"]).vary_by == ("user_id",)


class TestQueryCacheWiring:
    """QueryCache decides everything when it is built and refuses what cannot work."""

    def test_left_out_of_types_without_a_policy(self) -> None:
        """A query type without a policy has no QueryCache in its pipeline."""
        query_cache = get_user_cache(InMemoryCache())
        bus = QueryBus(
            {GetUser: GetUserHandler(UserStore()), ListUsers: object.__new__(GetUserHandler)}, [query_cache]
        )
        assert bus.behaviours_for(GetUser) == (query_cache,)
        assert bus.behaviours_for(ListUsers) == ()

    def test_refused_on_a_command_bus(self) -> None:
        """QueryCache works on query buses only."""

        @attrs.frozen
        class Noop(Command[None]):
            pass

        class NoopHandler:
            async def handle(self, command: Noop, context: Context) -> None:
                return None

        with pytest.raises(ConfigurationError, match="Query buses only"):
            CommandBus({Noop: NoopHandler()}, [get_user_cache(InMemoryCache())])

    def test_describe_lists_the_policy(self) -> None:
        """describe() gives the route inspector the ttl, key fields, tags, key callable and version."""
        described = QueryCache(InMemoryCache(), POLICIES).describe(GetUser)
        assert described == {
            "ttl": 300.0,
            "vary_by": ["user_id"],
            "tags": "user_tags",
            "key": None,
            "version": 1,
            "cache_null_results": False,
        }
        assert QueryCache(InMemoryCache(), POLICIES).describe(ListUsers)["vary_by"] == "all fields"

    def test_an_unknown_vary_by_field_is_a_configuration_error(self) -> None:
        """A vary_by name the query does not have is refused when the behaviour is built."""
        with pytest.raises(ConfigurationError, match=r"varies by \['nope'\]"):
            get_user_cache(InMemoryCache(), vary_by=("user_id", "nope"))

    def test_a_query_without_a_result_type_is_a_configuration_error(self) -> None:
        """A query that does not say what it returns cannot be cached: its values could not be rebuilt."""

        @attrs.frozen
        class Untyped(Query):  # type: ignore[type-arg]
            x: int

        with pytest.raises(ConfigurationError, match="concrete type argument"):
            QueryCache(InMemoryCache(), {Untyped: CachePolicy(ttl=1)})

    def test_policies_are_keyed_by_query_types_and_hold_policies(self) -> None:
        """A key that is not a Query subclass, or a value that is not a CachePolicy, is refused."""
        with pytest.raises(ConfigurationError, match="keyed by Query subclasses"):
            QueryCache(InMemoryCache(), {str: CachePolicy(ttl=1)})
        with pytest.raises(ConfigurationError, match="not a CachePolicy"):
            QueryCache(InMemoryCache(), {GetUser: 60})  # type: ignore[dict-item]

    def test_a_cache_must_be_a_cache(self) -> None:
        """Something that is neither an aiocache cache nor a CacheBackend is refused."""
        with pytest.raises(ConfigurationError, match="is not a cache"):
            QueryCache(object(), POLICIES)

    def test_repr_names_the_cached_types(self) -> None:
        """The repr says which backend and which query types."""
        text = repr(QueryCache(InMemoryCache(), POLICIES))
        assert "InMemoryCache" in text
        assert "GetUser" in text
        assert "ListUsers" in text


class TestHitsAndMisses:
    """A miss runs the handler and stores its value; a hit returns it without running the handler."""

    async def test_miss_then_hit(self) -> None:
        """The first query runs the handler; the second is answered from the cache."""
        call_next = FakeNext()
        query_cache = get_user_cache(InMemoryCache())
        first = await query_cache(GetUser("42"), CONTEXT, call_next)
        second = await query_cache(GetUser("42"), CONTEXT, call_next)
        assert call_next.calls == 1
        assert first.data == second.data == ADA
        assert isinstance(second.data, UserDto)

    async def test_cache_info_on_miss_and_hit(self) -> None:
        """cache_info says whether it was a hit, under which key and for how long."""
        query_cache = get_user_cache(InMemoryCache(), vary_by=("user_id",))
        miss = await query_cache(GetUser("42"), CONTEXT, FakeNext())
        hit = await query_cache(GetUser("42"), CONTEXT, FakeNext())
        key = 'tests.caching_app.GetUser:v1:{"user_id":"42"}'
        assert miss.cache_info is not None
        assert hit.cache_info is not None
        assert (miss.cache_info.hit, miss.cache_info.key, miss.cache_info.ttl) == (False, key, 60.0)
        assert (hit.cache_info.hit, hit.cache_info.key, hit.cache_info.ttl) == (True, key, 60.0)
        assert hit.operation_id == CONTEXT.operation_id

    async def test_expiry_follows_the_ttl(self) -> None:
        """An entry older than its ttl is a miss again (a clock the test moves)."""
        now = [1000.0]
        call_next = FakeNext()
        query_cache = get_user_cache(InMemoryCache(clock=lambda: now[0]), ttl=30)
        await query_cache(GetUser("42"), CONTEXT, call_next)
        now[0] += 29.9
        assert (await query_cache(GetUser("42"), CONTEXT, call_next)).cache_info.hit  # type: ignore[union-attr]
        now[0] += 0.2
        assert not (await query_cache(GetUser("42"), CONTEXT, call_next)).cache_info.hit  # type: ignore[union-attr]
        assert call_next.calls == 2

    async def test_expiry_on_the_aiocache_memory_backend(self) -> None:
        """With aiocache's memory cache and a short ttl, the entry goes away by itself."""
        call_next = FakeNext()
        query_cache = get_user_cache(memory_cache(), ttl=0.05)
        await query_cache(GetUser("42"), CONTEXT, call_next)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while (await query_cache(GetUser("42"), CONTEXT, call_next)).cache_info.hit:  # type: ignore[union-attr]
            assert loop.time() < deadline, "the entry never expired"
            await asyncio.sleep(0.01)
        assert call_next.calls == 2

    async def test_a_ttl_callable_of_the_query(self) -> None:
        """A callable ttl is asked per query; 0 means this query is not cached."""
        call_next = FakeNext()
        query_cache = get_user_cache(InMemoryCache(), ttl=lambda q: 0 if q.user_id == "0" else 15)
        hit = [await query_cache(GetUser("42"), CONTEXT, call_next) for _ in range(2)][-1]
        assert hit.cache_info is not None
        assert hit.cache_info.ttl == 15.0
        assert hit.cache_info.hit
        uncached = [await query_cache(GetUser("0"), CONTEXT, call_next) for _ in range(2)][-1]
        assert uncached.cache_info is None
        assert call_next.calls == 3

    async def test_vary_by_ignores_other_fields(self) -> None:
        """Queries that differ only in fields outside vary_by share one entry."""
        call_next = FakeNext()
        query_cache = get_user_cache(InMemoryCache(), vary_by=("user_id",))
        await query_cache(GetUser("42", trace="a"), CONTEXT, call_next)
        hit = await query_cache(GetUser("42", trace="b"), CONTEXT, call_next)
        await query_cache(GetUser("7", trace="a"), CONTEXT, call_next)
        assert hit.cache_info is not None
        assert hit.cache_info.hit
        assert call_next.calls == 2

    async def test_without_vary_by_every_field_counts(self) -> None:
        """With vary_by None, a different value in any field is another entry."""
        call_next = FakeNext()
        query_cache = get_user_cache(InMemoryCache())
        await query_cache(GetUser("42", trace="a"), CONTEXT, call_next)
        await query_cache(GetUser("42", trace="b"), CONTEXT, call_next)
        assert call_next.calls == 2

    async def test_a_key_callable_takes_over(self) -> None:
        """A policy's key callable replaces the fields in the key; type and version stay in front."""
        call_next = FakeNext()
        query_cache = get_user_cache(InMemoryCache(), key=lambda q: f"user-{q.user_id}", version=3)
        result = await query_cache(GetUser("42", trace="x"), CONTEXT, call_next)
        assert result.cache_info is not None
        assert result.cache_info.key == "tests.caching_app.GetUser:v3:user-42"

    async def test_a_new_version_never_reads_old_entries(self) -> None:
        """Bumping the policy version makes every old entry unreachable."""
        cache = InMemoryCache()
        call_next = FakeNext()
        await get_user_cache(cache, version=1)(GetUser("42"), CONTEXT, call_next)
        result = await get_user_cache(cache, version=2)(GetUser("42"), CONTEXT, call_next)
        assert result.cache_info is not None
        assert not result.cache_info.hit
        assert call_next.calls == 2

    async def test_none_is_not_cached_by_default(self) -> None:
        """A None result runs the handler again next time, unless cache_null_results."""
        call_next = FakeNext(Result.success(None))
        query_cache = get_user_cache(InMemoryCache())
        await query_cache(GetUser("42"), CONTEXT, call_next)
        await query_cache(GetUser("42"), CONTEXT, call_next)
        assert call_next.calls == 2

    async def test_none_is_cached_when_asked(self) -> None:
        """With cache_null_results, a None result is a hit next time and comes back as None."""
        call_next = FakeNext(Result.success(None))
        query_cache = get_user_cache(InMemoryCache(), cache_null_results=True)
        await query_cache(GetUser("42"), CONTEXT, call_next)
        hit = await query_cache(GetUser("42"), CONTEXT, call_next)
        assert hit.cache_info is not None
        assert hit.cache_info.hit
        assert hit.data is None
        assert call_next.calls == 1

    async def test_failure_results_are_never_cached(self) -> None:
        """A failed Result passes through untouched and the next query runs the handler again."""
        call_next = FakeNext(Result.failure(OperationStatus.NOT_FOUND, {"detail": "no user"}))
        query_cache = get_user_cache(InMemoryCache())
        first = await query_cache(GetUser("42"), CONTEXT, call_next)
        await query_cache(GetUser("42"), CONTEXT, call_next)
        assert first.status is OperationStatus.NOT_FOUND
        assert first.cache_info is None
        assert call_next.calls == 2

    async def test_exceptions_pass_up_and_are_never_cached(self) -> None:
        """An exception from the handler travels up unchanged; nothing is stored."""
        cache = InMemoryCache()
        call_next = FakeNext(error=NotFoundError("no user"))
        query_cache = get_user_cache(cache)
        for _ in range(2):
            with pytest.raises(NotFoundError):
                await query_cache(GetUser("42"), CONTEXT, call_next)
        assert call_next.calls == 2
        assert not [key for key in cache.keys if "GetUser" in key]

    async def test_a_lookup_with_tags_is_one_round_trip(self) -> None:
        """The entry and its tag versions are read with one multi_get per lookup."""
        cache = InMemoryCache()
        query_cache = QueryCache(cache, POLICIES)
        await query_cache(GetUser("42"), CONTEXT, FakeNext())
        cache.calls.clear()
        await query_cache(GetUser("42"), CONTEXT, FakeNext())
        assert [op for op, _ in cache.calls] == ["multi_get"]

    async def test_an_unreadable_entry_is_a_miss(self) -> None:
        """An entry that does not fit the result type is treated as a miss and replaced."""
        cache = InMemoryCache()
        query_cache = get_user_cache(cache)
        key = query_cache.key_for(GetUser("42"))
        await cache.set(key, [{"unexpected": 1}, []], 60)
        call_next = FakeNext()
        with structlog.testing.capture_logs() as logs:
            result = await query_cache(GetUser("42"), CONTEXT, call_next)
        assert result.data == ADA
        assert call_next.calls == 1
        assert [entry["operation"] for entry in logs] == ["decode"]
        assert (await cache.get(key))[0] == {"id": "42", "name": "Ada", "email": "ada@example.com"}


class TestPages:
    """Paginated results round-trip as Page[T] with their pagination."""

    async def test_a_cached_page_comes_back_as_a_page_of_dtos(self) -> None:
        """A hit rebuilds the Page, its items as DTOs, and Result.pagination."""
        page = Page([ADA], total_count=11, page=1, page_size=1)
        call_next = FakeNext(Result.success(page))
        query_cache = QueryCache(InMemoryCache(json_round_trip=True), POLICIES)
        await query_cache(ListUsers(page_size=1), CONTEXT, call_next)
        hit = await query_cache(ListUsers(page_size=1), CONTEXT, call_next)
        assert hit.cache_info is not None
        assert hit.cache_info.hit
        assert hit.data == page
        assert isinstance(hit.data.items[0], UserDto)
        assert hit.pagination == page.pagination


class Gate:
    """A call_next that waits for `release`, then returns or raises; `started` is set once it runs."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.error = error
        self.calls = 0

    async def __call__(self, message: Any, context: Context) -> Result[Any]:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return Result.success(ADA)


class TestSingleFlight:
    """Concurrent misses for one key in one process run the handler once."""

    async def test_a_hundred_concurrent_misses_run_the_handler_once(self) -> None:
        """100 identical queries at once: one handler run, 100 equal answers."""
        release = asyncio.Event()
        calls = 0

        async def slow_next(message: Any, context: Context) -> Result[Any]:
            nonlocal calls
            calls += 1
            await release.wait()
            return Result.success(ADA)

        query_cache = QueryCache(memory_cache(), POLICIES)
        tasks = [asyncio.create_task(query_cache(GetUser("42"), CONTEXT, slow_next)) for _ in range(100)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*tasks)
        assert calls == 1
        assert all(result.data == ADA for result in results)
        assert sum(not result.cache_info.hit for result in results) == 1  # type: ignore[union-attr]

    async def test_lookups_slower_than_a_whole_load_do_not_load_again(self) -> None:
        """Reads that take longer than a load (as over a network) still run the handler once."""

        class SlowReads(InMemoryCache):
            reads = 0

            async def get(self, key: str) -> Any:
                value = await super().get(key)  # read now, answer later: the answer may be stale
                self.reads += 1
                for _ in range(self.reads % 7):
                    await asyncio.sleep(0)
                return value

        async def call_next(message: Any, context: Context) -> Result[Any]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            return Result.success(ADA)

        calls = 0
        query_cache = get_user_cache(SlowReads())
        results = await asyncio.gather(*(query_cache(GetUser("42"), CONTEXT, call_next) for _ in range(100)))
        assert calls == 1
        assert all(result.data == ADA for result in results)

    async def test_through_a_bus_built_by_the_container(self) -> None:
        """The same holds through a real QueryBus from the container: the store is read once."""
        container = Container()
        bus = container.query_bus()
        results = await asyncio.gather(*(bus.execute(GetUser("42")) for _ in range(100)))
        assert container.store().reads["GetUser"] == 1
        assert {result.data for result in results} == {ADA}
        assert len({result.operation_id for result in results}) == 100

    async def test_cancelling_the_loader_does_not_break_the_waiters(self) -> None:
        """When the query that runs the handler is cancelled, a waiting one loads instead and answers."""
        gate = Gate()
        query_cache = get_user_cache(InMemoryCache())
        loader = asyncio.create_task(query_cache(GetUser("42"), CONTEXT, gate))
        await gate.started.wait()
        waiters = [asyncio.create_task(query_cache(GetUser("42"), CONTEXT, gate)) for _ in range(5)]
        await asyncio.sleep(0)
        loader.cancel()
        gate.release.set()
        results = await asyncio.gather(*waiters)
        assert loader.cancelled()
        assert all(result.data == ADA for result in results)
        assert gate.calls == 2

    async def test_cancelling_a_waiter_leaves_the_loader_alone(self) -> None:
        """A cancelled waiter stops waiting; the loader and the other waiters finish normally."""
        gate = Gate()
        query_cache = get_user_cache(InMemoryCache())
        loader = asyncio.create_task(query_cache(GetUser("42"), CONTEXT, gate))
        await gate.started.wait()
        quitter = asyncio.create_task(query_cache(GetUser("42"), CONTEXT, gate))
        stayer = asyncio.create_task(query_cache(GetUser("42"), CONTEXT, gate))
        await asyncio.sleep(0)
        quitter.cancel()
        gate.release.set()
        assert (await loader).data == ADA
        assert (await stayer).data == ADA
        with pytest.raises(asyncio.CancelledError):
            await quitter

    async def test_waiters_share_the_loaders_exception(self) -> None:
        """When the handler raises, every waiting query gets that error, and the handler ran once."""
        gate = Gate(error=NotFoundError("no user"))
        query_cache = get_user_cache(InMemoryCache())
        tasks = [asyncio.create_task(query_cache(GetUser("42"), CONTEXT, gate)) for _ in range(3)]
        await gate.started.wait()
        gate.release.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert gate.calls == 1
        assert all(isinstance(outcome, NotFoundError) for outcome in outcomes)


class TestFailOpen:
    """When the cache fails, the handler answers and a warning is logged."""

    async def test_a_cache_that_always_raises(self) -> None:
        """Every query still succeeds from the handler; one warning covers the outage."""
        cache = FailingCache()
        call_next = FakeNext()
        query_cache = QueryCache(cache, POLICIES)
        with structlog.testing.capture_logs() as logs:
            results = [await query_cache(GetUser("42"), CONTEXT, call_next) for _ in range(5)]
        assert all(result.is_success and result.data == ADA for result in results)
        assert all(not result.cache_info.hit for result in results)  # type: ignore[union-attr]
        assert call_next.calls == 5
        assert cache.calls == 5
        assert len(logs) == 1
        assert logs[0]["log_level"] == "warning"
        assert logs[0]["event"] == "cache_unavailable"
        assert logs[0]["error_type"] == "ConnectionError"

    async def test_warnings_come_back_after_the_interval_with_a_count(self) -> None:
        """After warn_interval, the next failure is logged again with how many were left out."""
        query_cache = QueryCache(FailingCache(), POLICIES, warn_interval=0.0)
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                await query_cache(GetUser("42"), CONTEXT, FakeNext())
        assert [entry["suppressed"] for entry in logs] == [0, 0, 0]

    async def test_a_timeout_error_fails_open_too(self) -> None:
        """A TimeoutError (what a bounded backend raises when time runs out) fails open like any error."""
        query_cache = QueryCache(FailingCache(TimeoutError), POLICIES)
        with structlog.testing.capture_logs() as logs:
            result = await query_cache(GetUser("42"), CONTEXT, FakeNext())
        assert result.data == ADA
        assert logs[0]["error_type"] == "TimeoutError"

    async def test_a_failing_write_keeps_the_answer(self) -> None:
        """When only storing fails, the handler's answer is returned and a warning logged."""

        class WriteFails(InMemoryCache):
            async def set(self, key: str, value: Any, ttl: float | None) -> None:
                raise ConnectionError("read-only replica")

        with structlog.testing.capture_logs() as logs:
            result = await get_user_cache(WriteFails())(GetUser("42"), CONTEXT, FakeNext())
        assert result.data == ADA
        assert [entry["operation"] for entry in logs] == ["set"]

    async def test_through_a_bus(self) -> None:
        """Through a QueryBus, a dead cache never turns a query into a failure."""
        bus = QueryBus({GetUser: GetUserHandler(UserStore())}, [QueryCache(FailingCache(), POLICIES)])
        with structlog.testing.capture_logs():
            result = await bus.execute(GetUser("42"))
        assert result.status is OperationStatus.SUCCESS
        assert result.data == ADA

    async def test_cancellation_is_never_swallowed(self) -> None:
        """A cancelled handler cancels the query; QueryCache does not turn it into an answer."""
        query_cache = get_user_cache(InMemoryCache())
        with pytest.raises(asyncio.CancelledError):
            await query_cache(GetUser("42"), CONTEXT, FakeNext(error=asyncio.CancelledError()))


class TestThroughTheContainer:
    """The container wires a memory cache by default and the bus caches with it."""

    async def test_hit_through_a_real_bus(self) -> None:
        """GetUser twice through the container's bus reads the store once."""
        container = Container()
        bus = container.query_bus()
        first = await bus.execute(GetUser("42"))
        second = await bus.execute(GetUser("42"))
        assert container.store().reads["GetUser"] == 1
        assert first.cache_info is not None
        assert second.cache_info is not None
        assert (first.cache_info.hit, second.cache_info.hit) == (False, True)
        assert second.data == ADA

    async def test_a_missing_user_is_not_cached(self) -> None:
        """NOT_FOUND comes back each time and the handler runs each time."""
        container = Container()
        bus = container.query_bus()
        for _ in range(2):
            assert (await bus.execute(GetUser("404"))).status is OperationStatus.NOT_FOUND
        assert container.store().reads["GetUser"] == 2

    async def test_null_results_cached_by_policy(self) -> None:
        """FindUserByEmail caches its None (cache_null_results=True)."""
        container = Container()
        bus = container.query_bus()
        for _ in range(2):
            assert (await bus.execute(FindUserByEmail("nobody@example.com"))).data is None
        assert container.store().reads["FindUserByEmail"] == 1


class LockWatch(InMemoryCache):
    """An InMemoryCache that says when a process found the load lock taken."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = asyncio.Event()

    async def add(self, key: str, value: Any, ttl: float | None) -> bool:
        stored = await super().add(key, value, ttl)
        if not stored and key.startswith("lock:"):
            self.refused.set()
        return stored


class TestCrossProcessLock:
    """With lock_ttl, concurrent misses in two processes sharing a cache run one handler."""

    @staticmethod
    def two_processes(cache: InMemoryCache, lock_ttl: float = 5.0) -> tuple[QueryCache, QueryCache]:
        return tuple(  # type: ignore[return-value]
            QueryCache(cache, {GetUser: CachePolicy(ttl=60)}, lock_ttl=lock_ttl, lock_poll=0.001)
            for _ in range(2)
        )

    async def test_the_second_process_waits_for_the_first_ones_entry(self) -> None:
        """B misses while A loads; B answers from A's entry and never runs its handler."""
        cache = LockWatch()
        first, second = self.two_processes(cache)
        gate_a, gate_b = Gate(), Gate()
        a = asyncio.create_task(first(GetUser("42"), CONTEXT, gate_a))
        await gate_a.started.wait()
        b = asyncio.create_task(second(GetUser("42"), CONTEXT, gate_b))
        await cache.refused.wait()
        gate_a.release.set()
        result_a, result_b = await a, await b
        assert gate_b.calls == 0
        assert result_b.data == result_a.data == ADA
        assert result_b.cache_info is not None
        assert result_b.cache_info.hit
        assert not [key for key in cache.keys if key.startswith("lock:")]

    async def test_when_the_loader_fails_the_other_process_loads(self) -> None:
        """A's handler raises: the lock goes, and B runs its own handler."""
        cache = InMemoryCache()
        first, second = self.two_processes(cache)
        gate_a, gate_b = Gate(NotFoundError("no user")), Gate()
        gate_b.release.set()
        a = asyncio.create_task(first(GetUser("42"), CONTEXT, gate_a))
        await gate_a.started.wait()
        b = asyncio.create_task(second(GetUser("42"), CONTEXT, gate_b))
        await asyncio.sleep(0)
        gate_a.release.set()
        with pytest.raises(NotFoundError):
            await a
        assert (await b).data == ADA
        assert gate_b.calls == 1

    async def test_a_waiter_gives_up_after_lock_ttl(self) -> None:
        """When the loader takes longer than lock_ttl, the other process loads by itself."""
        cache = InMemoryCache()
        first, second = self.two_processes(cache, lock_ttl=0.05)
        gate_a, gate_b = Gate(), Gate()
        gate_b.release.set()
        a = asyncio.create_task(first(GetUser("42"), CONTEXT, gate_a))
        await gate_a.started.wait()
        assert (await second(GetUser("42"), CONTEXT, gate_b)).data == ADA
        assert gate_b.calls == 1
        gate_a.release.set()
        await a

    async def test_without_lock_ttl_each_process_loads(self) -> None:
        """By default the lock is off: two processes missing at once both run their handler."""
        cache = InMemoryCache()
        first, second = (QueryCache(cache, {GetUser: CachePolicy(ttl=60)}) for _ in range(2))
        gate_a, gate_b = Gate(), Gate()
        a = asyncio.create_task(first(GetUser("42"), CONTEXT, gate_a))
        b = asyncio.create_task(second(GetUser("42"), CONTEXT, gate_b))
        await gate_a.started.wait()
        await gate_b.started.wait()
        gate_a.release.set()
        gate_b.release.set()
        await asyncio.gather(a, b)
        assert (gate_a.calls, gate_b.calls) == (1, 1)

    def test_lock_ttl_must_be_positive(self) -> None:
        """A lock_ttl of zero or less is refused."""
        with pytest.raises(ConfigurationError, match="lock_ttl"):
            QueryCache(InMemoryCache(), POLICIES, lock_ttl=0)

    @pytest.mark.parametrize("setting", ["lock_poll", "tag_ttl"])
    def test_lock_poll_and_tag_ttl_must_be_positive(self, setting: str) -> None:
        """A poll interval or a tag lifetime of zero or less is refused when the behaviour is built."""
        with pytest.raises(ConfigurationError, match=setting):
            QueryCache(InMemoryCache(), POLICIES, **{setting: 0})


class TestResultTags:
    """`CachePolicy.result_tags`: tags from the handler's result, applied when the entry is stored."""

    async def test_a_command_affecting_a_tag_only_the_result_names_drops_the_entry(self) -> None:
        """The entry depends on the author its result names, and on nothing else it did not name."""

        @attrs.frozen
        class Post:
            id: str
            author: str

        @attrs.frozen
        class GetPost(Query[Post]):
            post_id: str

        @attrs.frozen
        class RenameAuthor(Command[None]):
            author: str

        class GetPostHandler:
            async def handle(self, query: GetPost, context: Context) -> Post:
                return Post(query.post_id, "ann" if query.post_id == "1" else "bob")

        class RenameAuthorHandler:
            async def handle(self, command: RenameAuthor, context: Context) -> Result[None]:
                return Result.success(
                    None, affected_entities=[AffectedEntity("author", command.author, "updated")]
                )

        cache = InMemoryCache()
        policy = CachePolicy[GetPost](ttl=60, result_tags=lambda query, post: [("author", post.author)])
        queries = QueryBus({GetPost: GetPostHandler()}, [QueryCache(cache, {GetPost: policy})])
        commands = CommandBus({RenameAuthor: RenameAuthorHandler()}, [CacheInvalidation(cache)])

        async def hit(post_id: str) -> bool:
            info = (await queries.execute(GetPost(post_id))).cache_info
            assert info is not None
            return info.hit

        assert not await hit("1")
        assert not await hit("2")
        assert await hit("1")
        (await commands.execute(RenameAuthor("ann"))).unwrap()
        assert not await hit("1")
        assert await hit("2")
        (await commands.execute(RenameAuthor("*"))).unwrap()
        assert not await hit("1")
        assert not await hit("2")
