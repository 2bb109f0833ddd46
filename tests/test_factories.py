from __future__ import annotations

from typing import Any

import attrs
import pytest
from dependency_injector import containers, providers

from cqrskit import Command, CommandBus, ConfigurationError, Context


@attrs.frozen
class Ping(Command[str]):
    pass


class Counter:
    """Counts how many handlers were built."""

    def __init__(self) -> None:
        self.built = 0


class PingHandler:
    def __init__(self, counter: Counter, reply: str = "pong") -> None:
        counter.built += 1
        self.reply = reply

    async def handle(self, command: Ping, context: Context) -> str:
        return self.reply


class FakePingHandler:
    async def handle(self, command: Ping, context: Context) -> str:
        return "fake"


class PerDispatch(containers.DeclarativeContainer):
    counter = providers.Singleton(Counter)
    ping_handler = providers.Factory(PingHandler, counter=counter)
    command_bus = providers.Singleton(CommandBus, handlers=providers.Dict({Ping: ping_handler.provider}))


class Shared(containers.DeclarativeContainer):
    counter = providers.Singleton(Counter)
    ping_handler = providers.Factory(PingHandler, counter=counter)
    command_bus = providers.Singleton(CommandBus, handlers=providers.Dict({Ping: ping_handler}))


class TestProviderForm:
    async def test_resolved_per_dispatch(self) -> None:
        """With the .provider form the container builds a handler for every dispatch."""
        container = PerDispatch()
        bus = container.command_bus()
        await bus.execute(Ping())
        await bus.execute(Ping())
        assert container.counter().built == 2

    async def test_an_override_after_build_takes_effect(self) -> None:
        """A provider overridden after the bus was built serves the next dispatch; a reset restores it."""
        container = PerDispatch()
        bus = container.command_bus()
        assert (await bus.execute(Ping())).data == "pong"
        with container.ping_handler.override(providers.Factory(FakePingHandler)):
            assert (await bus.execute(Ping())).data == "fake"
        assert (await bus.execute(Ping())).data == "pong"

    async def test_a_factory_returning_a_non_handler(self) -> None:
        """A factory that returns something without handle raises ConfigurationError at dispatch."""
        container = PerDispatch()
        bus = container.command_bus()
        container.ping_handler.override(providers.Object(object()))
        try:
            with pytest.raises(ConfigurationError, match="no 'async def handle"):
                await bus.execute(Ping())
        finally:
            container.ping_handler.reset_last_overriding()


class TestPlainFactory:
    async def test_resolved_once(self) -> None:
        """A plain Factory in the map is resolved once, when the bus is built, and the handler shared."""
        container = Shared()
        bus = container.command_bus()
        await bus.execute(Ping())
        await bus.execute(Ping())
        assert container.counter().built == 1

    async def test_an_override_after_build_is_not_seen(self) -> None:
        """Overriding the handler provider after the bus was built does not change that bus."""
        container = Shared()
        bus = container.command_bus()
        with container.ping_handler.override(providers.Factory(FakePingHandler)):
            assert (await bus.execute(Ping())).data == "pong"


class TestCallableValues:
    async def test_a_zero_argument_function(self) -> None:
        """A zero-argument function returning a handler is called per dispatch."""
        calls: list[int] = []

        def factory() -> Any:
            calls.append(1)
            return FakePingHandler()

        bus = CommandBus({Ping: factory})
        assert (await bus.execute(Ping())).data == "fake"
        assert (await bus.execute(Ping())).data == "fake"
        assert len(calls) == 2

    async def test_a_handler_class(self) -> None:
        """A handler class with a zero-argument constructor works as a factory."""
        assert (await CommandBus({Ping: FakePingHandler}).execute(Ping())).data == "fake"
