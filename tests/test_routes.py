from __future__ import annotations

import attrs
import pytest
from dependency_injector import containers, providers

from cqrskit import Command, CommandBus, ConfigurationError, Context, merge_routes


@attrs.frozen
class CreateUser(Command[str]):
    pass


@attrs.frozen
class CreateOrder(Command[str]):
    pass


class Echo:
    def __init__(self, text: str) -> None:
        self.text = text

    async def handle(self, command: object, context: Context) -> str:
        return self.text


class TestMergeRoutes:
    def test_joins(self) -> None:
        """merge_routes returns one read-only map holding every route."""
        users, orders = Echo("u"), Echo("o")
        merged = merge_routes({CreateUser: users}, {CreateOrder: orders})
        assert dict(merged) == {CreateUser: users, CreateOrder: orders}
        with pytest.raises(TypeError):
            merged[CreateUser] = orders  # type: ignore[index]

    def test_no_mappings(self) -> None:
        """merge_routes of nothing is an empty map."""
        assert dict(merge_routes()) == {}

    def test_a_type_mapped_twice(self) -> None:
        """A message type routed by two mappings raises ConfigurationError naming it."""
        with pytest.raises(ConfigurationError, match="CreateUser is routed twice"):
            merge_routes({CreateUser: Echo("a")}, {CreateUser: Echo("b")})

    async def test_in_a_container(self) -> None:
        """Feature modules' providers.Dict maps merge in a container into one bus."""

        class Container(containers.DeclarativeContainer):
            users = providers.Dict({CreateUser: providers.Factory(Echo, "u").provider})
            orders = providers.Dict({CreateOrder: providers.Factory(Echo, "o").provider})
            command_bus = providers.Singleton(
                CommandBus, handlers=providers.Callable(merge_routes, users, orders)
            )

        bus = Container().command_bus()
        assert (await bus.execute(CreateUser())).data == "u"
        assert (await bus.execute(CreateOrder())).data == "o"
