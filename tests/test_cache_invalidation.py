"""CacheInvalidation: affected entities drop tagged entries, after commit, never failing the command."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from cqrskit import (
    CallNext,
    CommandBus,
    ConfigurationError,
    Context,
    OperationStatus,
    QueryBus,
    Result,
)
from cqrskit.caching import CacheInvalidation, QueryCache, TwoLevelCache
from cqrskit.scope import TransactionScope, current_transaction
from cqrskit.testing import FailingCache, InMemoryCache
from tests.caching_app import (
    POLICIES,
    Container,
    GetUser,
    GetUserHandler,
    ListUsers,
    ListUsersHandler,
    RenameEveryone,
    RenameEveryoneHandler,
    RenameUser,
    RenameUserHandler,
    UserStore,
)

CONTEXT = Context(operation_id="op-1")


class FakeTransaction:
    """Stands in for the SQLAlchemy Transaction: a scope per command, its work run after "commit"."""

    def __init__(self, fail_after: bool = False) -> None:
        self.fail_after = fail_after
        self.pending_at_commit: list[int] = []

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        scope = TransactionScope(current_transaction())
        with scope.entered():
            result = await call_next(message, context)
        if result.is_success and not self.fail_after:
            self.pending_at_commit.append(scope.pending)
            await scope.run_after_commit()
            return result
        scope.discard()
        return (
            Result.failure(OperationStatus.CONFLICT, {"detail": "rolled back"})
            if result.is_success
            else result
        )


class App:
    """A query bus and a command bus sharing one cache and one store, with behaviours of the test's choice."""

    def __init__(self, cache: object | None = None, command_behaviours: list[object] | None = None) -> None:
        self.cache = cache if cache is not None else InMemoryCache()
        self.store = UserStore()
        self.queries = QueryBus(
            {GetUser: GetUserHandler(self.store), ListUsers: ListUsersHandler(self.store)},
            [QueryCache(self.cache, POLICIES)],
        )
        behaviours = command_behaviours if command_behaviours is not None else [CacheInvalidation(self.cache)]
        self.commands = CommandBus(
            {
                RenameUser: RenameUserHandler(self.store),
                RenameEveryone: RenameEveryoneHandler(self.store),
            },
            behaviours,
        )

    async def hit(self, query: Any) -> bool:
        result = await self.queries.execute(query)
        assert result.cache_info is not None
        return result.cache_info.hit


class TestInvalidation:
    """A successful command drops the entries tagged with what it touched."""

    async def test_an_update_makes_the_next_read_a_miss_with_new_data(self) -> None:
        """GetUser(42) cached, RenameUser(42) succeeds, GetUser(42) misses and returns the new name."""
        app = App()
        await app.queries.execute(GetUser("42"))
        assert await app.hit(GetUser("42"))
        assert (await app.commands.execute(RenameUser("42", "Augusta"))).is_success
        after = await app.queries.execute(GetUser("42"))
        assert after.cache_info is not None
        assert not after.cache_info.hit
        assert after.data.name == "Augusta"

    async def test_other_entities_stay_cached(self) -> None:
        """Renaming user 42 leaves GetUser(7) cached."""
        app = App()
        await app.queries.execute(GetUser("7"))
        await app.commands.execute(RenameUser("42", "Augusta"))
        assert await app.hit(GetUser("7"))

    async def test_a_failed_command_invalidates_nothing(self) -> None:
        """A RenameUser that fails (NOT_FOUND) leaves every entry in place."""
        app = App()
        await app.queries.execute(GetUser("42"))
        await app.queries.execute(ListUsers())
        assert (await app.commands.execute(RenameUser("404", "x"))).status is OperationStatus.NOT_FOUND
        assert await app.hit(GetUser("42"))
        assert await app.hit(ListUsers())

    async def test_lists_tagged_with_a_wildcard_drop_on_any_change_of_the_kind(self) -> None:
        """ListUsers, tagged ("user", "*"), is a miss after any user changes."""
        app = App()
        await app.queries.execute(ListUsers())
        await app.commands.execute(RenameUser("7", "Hopper"))
        after = await app.queries.execute(ListUsers())
        assert after.cache_info is not None
        assert not after.cache_info.hit
        assert [user.name for user in after.data.items] == ["Ada", "Hopper"]

    async def test_an_entity_id_star_drops_every_entity_of_the_kind(self) -> None:
        """A command that touched ("user", "*") drops GetUser entries of every id, and the lists."""
        app = App()
        for query in (GetUser("42"), GetUser("7"), ListUsers()):
            await app.queries.execute(query)
        await app.commands.execute(RenameEveryone("!"))
        for query in (GetUser("42"), GetUser("7"), ListUsers()):
            assert not await app.hit(query)
        assert (await app.queries.execute(GetUser("42"))).data.name == "Ada!"

    async def test_an_in_process_level_sees_its_own_invalidation_at_once(self) -> None:
        """Over a TwoLevelCache with a long local_ttl, a rename here is a miss here at once."""
        app = App(TwoLevelCache(InMemoryCache(), local_ttl=600))
        await app.queries.execute(GetUser("42"))
        await app.queries.execute(ListUsers())
        assert await app.hit(GetUser("42"))
        await app.commands.execute(RenameUser("42", "Augusta"))
        after = await app.queries.execute(GetUser("42"))
        assert after.cache_info is not None
        assert not after.cache_info.hit
        assert after.data.name == "Augusta"
        assert not await app.hit(ListUsers())

    async def test_commands_without_affected_entities_touch_no_cache(self) -> None:
        """A successful command that reports no entities makes no cache call."""
        cache = InMemoryCache()

        async def call_next(message: Any, context: Context) -> Result[Any]:
            return Result.success(None)

        await CacheInvalidation(cache)(RenameUser("42", "x"), CONTEXT, call_next)
        assert cache.calls == []

    async def test_through_the_container(self) -> None:
        """With the container's buses (memory cache by default), a rename is seen at once."""
        container = Container()
        queries, commands = container.query_bus(), container.command_bus()
        await queries.execute(GetUser("42"))
        await commands.execute(RenameUser("42", "Augusta"))
        after = await queries.execute(GetUser("42"))
        assert after.data.name == "Augusta"
        assert container.store().reads["GetUser"] == 2

    def test_refused_on_a_query_bus(self) -> None:
        """CacheInvalidation works on command buses only."""
        with pytest.raises(ConfigurationError, match="Command buses only"):
            QueryBus({GetUser: GetUserHandler(UserStore())}, [CacheInvalidation(InMemoryCache())])

    def test_tag_ttl_must_be_positive(self) -> None:
        """A tag lifetime of zero or less would drop the counters at once: refused when built."""
        with pytest.raises(ConfigurationError, match="tag_ttl"):
            CacheInvalidation(InMemoryCache(), tag_ttl=0)

    def test_describe_and_repr(self) -> None:
        """The route inspector learns what it does; the repr names the backend."""
        invalidation = CacheInvalidation(InMemoryCache())
        assert "affected entities" in str(invalidation.describe(RenameUser)["invalidates"])
        assert "InMemoryCache" in repr(invalidation)


class TestAfterCommit:
    """Inside an open transaction, invalidation waits for the commit and is dropped on rollback."""

    async def test_deferred_until_the_transaction_commits(self) -> None:
        """With a transaction scope open around it, the work is queued and runs after the commit."""
        cache = InMemoryCache()
        transaction = FakeTransaction()
        app = App(cache, [transaction, CacheInvalidation(cache)])
        await app.queries.execute(GetUser("42"))
        result = await app.commands.execute(RenameUser("42", "Augusta"))
        assert result.is_success
        assert transaction.pending_at_commit == [1]
        assert not await app.hit(GetUser("42"))

    async def test_dropped_when_the_transaction_rolls_back(self) -> None:
        """When the transaction rolls back after the handler succeeded, nothing is invalidated."""
        cache = InMemoryCache()
        app = App(cache, [FakeTransaction(fail_after=True), CacheInvalidation(cache)])
        await app.queries.execute(GetUser("42"))
        cache.calls.clear()
        result = await app.commands.execute(RenameUser("42", "Augusta"))
        assert result.status is OperationStatus.CONFLICT
        assert [op for op, _ in cache.calls] == []
        assert await app.hit(GetUser("42"))

    async def test_runs_at_once_when_no_transaction_is_open(self) -> None:
        """Outside a transaction (Transaction inside it, already committed), it runs before returning."""
        cache = InMemoryCache()
        app = App(cache, [CacheInvalidation(cache), FakeTransaction()])
        await app.queries.execute(GetUser("42"))
        await app.commands.execute(RenameUser("42", "Augusta"))
        assert not await app.hit(GetUser("42"))


class TestFailures:
    """A cache failure during invalidation is logged and never fails the committed command."""

    async def test_a_dead_cache_does_not_fail_the_command(self) -> None:
        """The command's SUCCESS stands; one error line is logged for the outage."""
        cache = FailingCache()
        bus = CommandBus({RenameUser: RenameUserHandler(UserStore())}, [CacheInvalidation(cache)])
        with structlog.testing.capture_logs() as logs:
            result = await bus.execute(RenameUser("42", "Augusta"))
        assert result.status is OperationStatus.SUCCESS
        assert cache.calls == 2  # both tags were tried
        assert [(entry["event"], entry["log_level"]) for entry in logs] == [
            ("cache_invalidation_failed", "error")
        ]

    async def test_a_dead_cache_after_commit_does_not_fail_the_command(self) -> None:
        """Deferred to the commit, the failure is logged there too and the command stays a SUCCESS."""
        cache = FailingCache()
        bus = CommandBus(
            {RenameUser: RenameUserHandler(UserStore())}, [FakeTransaction(), CacheInvalidation(cache)]
        )
        with structlog.testing.capture_logs() as logs:
            result = await bus.execute(RenameUser("42", "Augusta"))
        assert result.status is OperationStatus.SUCCESS
        assert [entry["event"] for entry in logs] == ["cache_invalidation_failed"]
