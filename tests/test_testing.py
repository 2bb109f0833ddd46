from __future__ import annotations

from typing import Any

import attrs
import pytest
from dependency_injector import containers, providers

from cqrskit import (
    Command,
    CommandBus,
    ConfigurationError,
    Context,
    HandlerNotFoundError,
    OperationStatus,
    Query,
    QueryBus,
    Result,
)
from cqrskit.testing import Recorded, RecordingBehaviour, override_handler, override_providers


@attrs.frozen
class CreateUser(Command[str]):
    email: str


@attrs.frozen
class GetUser(Query[str]):
    user_id: str


class CreateUserHandler:
    async def handle(self, command: CreateUser, context: Context) -> str:
        return "real"


class GetUserHandler:
    async def handle(self, query: GetUser, context: Context) -> str:
        return "ada"


class FakeCreateUser:
    async def handle(self, command: CreateUser, context: Context) -> str:
        return "fake"


class UserService:
    """An application service the container builds with the command bus injected."""

    def __init__(self, bus: CommandBus) -> None:
        self.bus = bus


class Container(containers.DeclarativeContainer):
    create_user = providers.Factory(CreateUserHandler)
    command_bus = providers.Singleton(CommandBus, handlers=providers.Dict({CreateUser: create_user}))
    query_bus = providers.Singleton(
        QueryBus, handlers=providers.Dict({GetUser: providers.Factory(GetUserHandler).provider})
    )
    unrelated = providers.Singleton(object)
    user_service = providers.Singleton(UserService, bus=command_bus)


class ProviderFormContainer(containers.DeclarativeContainer):
    command_bus = providers.Singleton(
        CommandBus, handlers=providers.Dict({CreateUser: providers.Factory(CreateUserHandler).provider})
    )


class PlainObjectContainer(containers.DeclarativeContainer):
    command_bus = providers.Singleton(CommandBus, handlers=providers.Dict({CreateUser: CreateUserHandler()}))


SHARED = Container()
"""One container for two tests in a row, to show an override does not leak from the first."""


class TestRecordingBehaviour:
    async def test_records_before_and_after(self) -> None:
        """It records the message before and the Result after, with the dispatch context."""
        recorder = RecordingBehaviour("r")
        bus = CommandBus({CreateUser: CreateUserHandler()}, [recorder])
        result = await bus.execute(CreateUser("a"))
        before, after = recorder.journal
        assert before == Recorded("r", "before", CreateUser("a"), before.context)
        assert before.context.operation_id == result.operation_id
        assert after.result == result
        assert after.error is None
        assert recorder.messages == [CreateUser("a")]
        assert recorder.phases() == [("r", "before"), ("r", "after")]

    async def test_records_an_exception(self) -> None:
        """An exception passing through is recorded as the error of the after entry and re-raised."""
        recorder = RecordingBehaviour()
        error = RuntimeError("x")

        async def call_next(message: Any, context: Context) -> Result[Any]:
            raise error

        with pytest.raises(RuntimeError):
            await recorder(CreateUser("a"), Context(), call_next)
        assert recorder.journal[-1].error is error
        assert recorder.journal[-1].result is None

    async def test_shared_journal(self) -> None:
        """Recorders sharing a journal list it in order; messages filters by name."""
        journal: list[Recorded] = []
        outer, inner = RecordingBehaviour("outer", journal), RecordingBehaviour("inner", journal)
        await CommandBus({CreateUser: CreateUserHandler()}, [outer, inner]).execute(CreateUser("a"))
        assert outer.phases() == [
            ("outer", "before"),
            ("inner", "before"),
            ("inner", "after"),
            ("outer", "after"),
        ]
        assert outer.messages == inner.messages == [CreateUser("a")]

    async def test_directly_with_a_fake_call_next(self) -> None:
        """Called directly it passes the message and context to call_next and returns its Result."""
        recorder = RecordingBehaviour()
        seen: list[tuple[Any, Context]] = []

        async def call_next(message: Any, context: Context) -> Result[Any]:
            seen.append((message, context))
            return Result.failure(OperationStatus.CONFLICT)

        context = Context(correlation_id="c")
        result = await recorder(CreateUser("a"), context, call_next)
        assert result.status is OperationStatus.CONFLICT
        assert seen == [(CreateUser("a"), context)]

    def test_repr(self) -> None:
        """Its repr names it."""
        assert repr(RecordingBehaviour("x")) == "RecordingBehaviour('x')"


class TestOverrideHandler:
    async def test_works_and_restores(self) -> None:
        """Inside the block the bus serves the fake; after it, a rebuilt bus serves the real handler."""
        container = Container()
        assert (await container.command_bus().execute(CreateUser("a"))).data == "real"
        with override_handler(container, CreateUser, FakeCreateUser()):
            assert (await container.command_bus().execute(CreateUser("a"))).data == "fake"
        assert (await container.command_bus().execute(CreateUser("a"))).data == "real"

    async def test_the_provider_form(self) -> None:
        """It overrides the Factory behind a .provider entry."""
        container = ProviderFormContainer()
        with override_handler(container, CreateUser, FakeCreateUser()):
            assert (await container.command_bus().execute(CreateUser("a"))).data == "fake"
        assert (await container.command_bus().execute(CreateUser("a"))).data == "real"

    async def test_restores_when_the_block_raises(self) -> None:
        """The original handler is back even when the with block raises."""
        container = Container()
        with pytest.raises(RuntimeError), override_handler(container, CreateUser, FakeCreateUser()):
            raise RuntimeError
        assert (await container.command_bus().execute(CreateUser("a"))).data == "real"

    def test_resets_only_the_singletons_built_from_the_overridden_maps(self) -> None:
        """The command bus is rebuilt; the query bus and unrelated singletons are kept."""
        container = Container()
        command_bus, query_bus, unrelated = (
            container.command_bus(),
            container.query_bus(),
            container.unrelated(),
        )
        with override_handler(container, CreateUser, FakeCreateUser()):
            inside = container.command_bus()
            assert inside is not command_bus
            assert container.query_bus() is query_bus
            assert container.unrelated() is unrelated
        assert container.command_bus() is not inside
        assert container.query_bus() is query_bus
        assert container.unrelated() is unrelated

    async def test_a_service_built_with_the_bus_is_rebuilt(self) -> None:
        """A singleton that was built with the bus is reset too, so it sees the fake inside the block."""
        container = Container()
        before = container.user_service()
        with override_handler(container, CreateUser, FakeCreateUser()):
            assert (await container.user_service().bus.execute(CreateUser("a"))).data == "fake"
        after = container.user_service()
        assert after is not before
        assert (await after.bus.execute(CreateUser("a"))).data == "real"

    async def test_overrides_in_a_shared_container(self) -> None:
        """First of two: override the handler in a module-level container."""
        with override_handler(SHARED, CreateUser, FakeCreateUser()):
            assert (await SHARED.command_bus().execute(CreateUser("a"))).data == "fake"

    async def test_does_not_leak_to_the_next_test(self) -> None:
        """Second of two: the module-level container serves the real handler again."""
        assert (await SHARED.command_bus().execute(CreateUser("a"))).data == "real"
        assert not SHARED.create_user.overridden

    def test_an_unrouted_type(self) -> None:
        """Overriding a type no map routes raises HandlerNotFoundError."""

        @attrs.frozen
        class Other(Command[None]):
            pass

        with pytest.raises(HandlerNotFoundError), override_handler(Container(), Other, FakeCreateUser()):
            pass

    def test_a_plain_object_route(self) -> None:
        """A route to a plain object (not a provider) cannot be overridden and says so."""
        with (
            pytest.raises(ConfigurationError, match="not a provider"),
            override_handler(PlainObjectContainer(), CreateUser, FakeCreateUser()),
        ):
            pass


class Greeter:
    def __init__(self, greeting: str = "hello") -> None:
        self.greeting = greeting


class GreetHandler:
    def __init__(self, greeter: Greeter) -> None:
        self.greeter = greeter

    async def handle(self, command: CreateUser, context: Context) -> str:
        return f"{self.greeter.greeting} {command.email}"


class GreetingContainer(containers.DeclarativeContainer):
    greeter = providers.Singleton(Greeter)
    unrelated = providers.Singleton(list)
    command_bus = providers.Singleton(
        CommandBus, handlers=providers.Dict({CreateUser: providers.Factory(GreetHandler, greeter=greeter)})
    )


class TestOverrideProviders:
    """`override_providers` never lets a bus built before it keep the originals."""

    async def test_a_bus_built_before_the_override_is_rebuilt(self) -> None:
        """The handler was built with the bus; the override still reaches the next bus."""
        container = GreetingContainer()
        before = container.command_bus()
        with override_providers(container, greeter=Greeter("hi")):
            during = await container.command_bus().execute(CreateUser("ada"))
        after = await container.command_bus().execute(CreateUser("ada"))

        assert container.command_bus() is not before
        assert (during.data, after.data) == ("hi ada", "hello ada")

    async def test_a_provider_replacement(self) -> None:
        """A provider given as the replacement is used as a provider."""
        container = GreetingContainer()
        with override_providers(container, greeter=providers.Singleton(Greeter, "hey")):
            result = await container.command_bus().execute(CreateUser("bob"))

        assert result.data == "hey bob"

    def test_leaves_unrelated_singletons_alone(self) -> None:
        """Only what is built from an overridden provider is reset."""
        container = GreetingContainer()
        unrelated = container.unrelated()
        with override_providers(container, greeter=Greeter("hi")):
            assert container.unrelated() is unrelated

    async def test_restores_when_the_block_raises(self) -> None:
        """The originals come back after an exception too."""
        container = GreetingContainer()
        with pytest.raises(RuntimeError), override_providers(container, greeter=Greeter("hi")):
            raise RuntimeError
        assert (await container.command_bus().execute(CreateUser("ada"))).data == "hello ada"

    def test_an_unknown_name(self) -> None:
        """A name the container does not declare is refused, with the names it has."""
        with pytest.raises(ConfigurationError, match=r"no provider named 'mailer'.*greeter"):
            with override_providers(GreetingContainer(), mailer=object()):
                pass
