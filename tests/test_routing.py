"""`cqrskit.routing`: one declaration per message, and the tables derived from it."""

from __future__ import annotations

from uuid import UUID

import attrs
import pytest
from dependency_injector import containers, providers

from cqrskit import (
    Command,
    CommandBus,
    ConfigurationError,
    Context,
    OperationStatus,
    Principal,
    Query,
    QueryBus,
)
from cqrskit.behaviours import Authenticated, Authorization, RequirePermissions, Retry, RetryPolicy, Timeout
from cqrskit.caching import CachePolicy, QueryCache
from cqrskit.routing import Route, Routes
from cqrskit.testing import InMemoryCache, override_handler


@attrs.frozen
class Rename(Command[str]):
    name: str


@attrs.frozen
class GetName(Query[str]):
    user_id: UUID


class RenameHandler:
    async def handle(self, command: Rename, context: Context) -> str:
        return command.name


class GetNameHandler:
    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, query: GetName, context: Context) -> str:
        self.calls += 1
        return "ada"


RENAME_RETRY = RetryPolicy(max_attempts=5)
GET_NAME_CACHE = CachePolicy(ttl=30)


class RoutedContainer(containers.DeclarativeContainer):
    cache = providers.Singleton(InMemoryCache)
    get_name = providers.Singleton(GetNameHandler)
    commands = Routes(
        Route(
            Rename,
            handler=providers.Factory(RenameHandler),
            rule=RequirePermissions("user:rename"),
            timeout=2.0,
            retry=RENAME_RETRY,
            isolation="SERIALIZABLE",
        )
    )
    queries = Routes(Route(GetName, handler=get_name, rule=Authenticated(), cache=GET_NAME_CACHE))
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(commands.handlers()),
        behaviours=providers.List(
            providers.Singleton(Timeout, per_message=commands.timeouts()),
            providers.Singleton(Authorization, rules=commands.rules()),
            providers.Singleton(Retry, per_message=commands.retry_policies()),
        ),
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict(queries.handlers()),
        behaviours=providers.List(
            providers.Singleton(Authorization, rules=queries.rules()),
            providers.Singleton(QueryCache, cache=cache, policies=queries.cache_policies()),
        ),
    )


class TestTables:
    """Each behaviour's table holds the routes that set its setting, and only those."""

    def test_every_table(self) -> None:
        """Handlers for every route; rules, timeouts, retries, isolation and policies where given."""
        routes = Routes(
            Route(
                Rename, handler=RenameHandler(), rule=Authenticated(), timeout=1.5, isolation="SERIALIZABLE"
            ),
            Route(GetName, handler=GetNameHandler(), cache=GET_NAME_CACHE),
        )
        assert list(routes.handlers()) == [Rename, GetName]
        assert list(routes.rules()) == [Rename]
        assert routes.timeouts() == {Rename: 1.5}
        assert routes.retry_policies() == {}
        assert routes.isolation() == {Rename: "SERIALIZABLE"}
        assert routes.cache_policies() == {GetName: GET_NAME_CACHE}
        assert len(routes) == 2
        assert [route.message for route in routes] == [Rename, GetName]
        assert repr(routes) == "Routes(tests.test_routing.Rename, tests.test_routing.GetName)"

    def test_joining_feature_modules(self) -> None:
        """Routes(*a, *b) joins two collections."""
        a = Routes(Route(Rename, handler=RenameHandler()))
        b = Routes(Route(GetName, handler=GetNameHandler()))
        assert list(Routes(*a, *b).handlers()) == [Rename, GetName]


class TestInAContainer:
    """Buses and behaviours built from the routes behave as with hand-written tables."""

    async def test_rules_timeouts_retries_and_cache(self) -> None:
        """The derived rule refuses, the derived policy caches, the derived settings are described."""
        container = RoutedContainer()
        commands, queries = container.command_bus(), container.query_bus()
        refused = await commands.execute(Rename("x"), Context(principal=Principal("bob")))
        allowed = await commands.execute(
            Rename("x"), Context(principal=Principal("ada", permissions={"user:rename"}))
        )
        ada = Context(principal=Principal("ada"))
        first = await queries.execute(GetName(UUID(int=1)), ada)
        second = await queries.execute(GetName(UUID(int=1)), ada)

        assert refused.status is OperationStatus.UNAUTHORIZED
        assert allowed.data == "x"
        assert first.cache_info is not None
        assert second.cache_info is not None
        assert (first.cache_info.hit, second.cache_info.hit) == (False, True)
        timeout, _, retry = commands.behaviours_for(Rename)
        assert timeout.seconds_for(Rename) == 2.0  # type: ignore[attr-defined]
        assert retry.policy_for(Rename) == RENAME_RETRY  # type: ignore[attr-defined]

    async def test_override_handler_reaches_a_routed_handler(self) -> None:
        """The handler map is a providers.Dict as before, so the testing helpers work on it."""
        container = RoutedContainer()

        class Fake:
            async def handle(self, command: Rename, context: Context) -> str:
                return "fake"

        admin = Context(principal=Principal("root", is_admin=True))
        with override_handler(container, Rename, Fake()):
            assert (await container.command_bus().execute(Rename("x"), admin)).data == "fake"


class TestMistakes:
    """A Route that cannot work is refused when it is declared, with the fix."""

    def test_a_message_declared_twice(self) -> None:
        with pytest.raises(ConfigurationError, match=r"Rename has two Routes: declare each message once"):
            Routes(Route(Rename, handler=RenameHandler()), Route(Rename, handler=RenameHandler()))

    def test_a_cache_policy_on_a_command(self) -> None:
        with pytest.raises(
            ConfigurationError, match="is not a Query: only a query's Route takes a cache policy"
        ):
            Route(Rename, handler=RenameHandler(), cache=GET_NAME_CACHE)

    def test_an_isolation_level_on_a_query(self) -> None:
        with pytest.raises(ConfigurationError, match="is a query: only a command's Route takes an isolation"):
            Route(GetName, handler=GetNameHandler(), isolation="SERIALIZABLE")

    @pytest.mark.parametrize("seconds", [0, -1, "2", True])
    def test_a_bad_timeout(self, seconds: object) -> None:
        with pytest.raises(ConfigurationError, match="is positive seconds"):
            Route(Rename, handler=RenameHandler(), timeout=seconds)  # type: ignore[arg-type]

    def test_not_a_message(self) -> None:
        with pytest.raises(ConfigurationError, match="Command, Query or StreamQuery subclass"):
            Route(str, handler=RenameHandler())

    def test_not_a_route(self) -> None:
        with pytest.raises(ConfigurationError, match=r"Routes takes Route\(...\) values"):
            Routes((Rename, RenameHandler()))  # type: ignore[arg-type]

    def test_a_bad_retry(self) -> None:
        with pytest.raises(ConfigurationError, match="is a RetryPolicy"):
            Route(Rename, handler=RenameHandler(), retry=3)  # type: ignore[arg-type]
