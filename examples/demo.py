"""A tiny in-memory app on cqrskit: run it with ``python -m examples.demo`` from the repository root.

One command and one query, their handlers declared in a dependency-injector container, and three of
cqrskit's behaviours around them: `Logging` (one line per dispatch), `Authorization` (who may do what)
and `Validation` (``message.validate()`` before the handler runs).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID, uuid4

import attrs
import structlog
from dependency_injector import containers, providers

from cqrskit import Command, CommandBus, Context, NotFoundError, Principal, Query, QueryBus
from cqrskit.behaviours import Authenticated, Authorization, Logging, RequirePermissions, Validation

# Messages --------------------------------------------------------------------------------------


@attrs.frozen
class CreateThing(Command[UUID]):
    name: str

    def validate(self) -> Mapping[str, str]:
        return {} if self.name.strip() else {"name": "must not be blank"}


@attrs.frozen
class ThingDto:
    id: UUID
    name: str


@attrs.frozen
class GetThing(Query[ThingDto]):
    thing_id: UUID


# Handlers and the repository they share ---------------------------------------------------------


class InMemoryThings:
    def __init__(self) -> None:
        self._names: dict[UUID, str] = {}

    def add(self, name: str) -> UUID:
        thing_id = uuid4()
        self._names[thing_id] = name
        return thing_id

    def get(self, thing_id: UUID) -> str | None:
        return self._names.get(thing_id)


class CreateThingHandler:
    def __init__(self, things: InMemoryThings) -> None:
        self.things = things

    async def handle(self, command: CreateThing, context: Context) -> UUID:
        return self.things.add(command.name)


class GetThingHandler:
    def __init__(self, things: InMemoryThings) -> None:
        self.things = things

    async def handle(self, query: GetThing, context: Context) -> ThingDto:
        name = self.things.get(query.thing_id)
        if name is None:
            raise NotFoundError(f"no thing {query.thing_id}")
        return ThingDto(query.thing_id, name)


# Logging's output: one short line per dispatch -----------------------------------------------------


def one_line(_logger: Any, level: str, event: dict[str, Any]) -> str:
    """Render a `Logging` event as one line (an app configures its own logging; cqrskit never does)."""
    return (
        f"  [{level}] {event['message_type']} -> {event['status']} in {event['duration_ms']} ms, "
        f"operation {event['operation_id']}"
    )


# The composition root --------------------------------------------------------------------------


class Container(containers.DeclarativeContainer):
    things = providers.Singleton(InMemoryThings)
    logger = providers.Singleton(
        structlog.wrap_logger,
        providers.Factory(structlog.PrintLogger),
        processors=[one_line],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    log = providers.Singleton(Logging, logger=logger, log_fields=False)
    authorization = providers.Singleton(
        Authorization,
        rules={CreateThing: RequirePermissions("thing:create"), GetThing: Authenticated()},
        logger=logger,
    )
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict({CreateThing: providers.Factory(CreateThingHandler, things=things).provider}),
        behaviours=providers.List(log, authorization, providers.Singleton(Validation)),
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict({GetThing: providers.Factory(GetThingHandler, things=things).provider}),
        behaviours=providers.List(log, authorization),
    )


async def main() -> None:
    container = Container()
    commands, queries = container.command_bus(), container.query_bus()
    context = Context(principal=Principal("demo-user", {"thing:create"}), correlation_id="demo-request-1")

    print("1. Create a thing")
    created = await commands.execute(CreateThing("teapot"), context)
    print(f"   -> {created.status}, id {created.data}")

    print("2. Fetch it")
    fetched = await queries.execute(GetThing(created.unwrap()), context)
    print(f"   -> {fetched.status}, {fetched.data}")

    print("3. Create a thing with a blank name")
    invalid = await commands.execute(CreateThing("  "), context)
    print(f"   -> {invalid.status}, errors {dict(invalid.errors)}")

    print("4. Fetch a thing that does not exist")
    missing = await queries.execute(GetThing(UUID(int=0)), context)
    print(f"   -> {missing.status}, errors {dict(missing.errors)}")

    print("5. Create a thing without logging in")
    anonymous = await commands.execute(CreateThing("kettle"))
    print(f"   -> {anonymous.status}, errors {dict(anonymous.errors)}")


if __name__ == "__main__":
    asyncio.run(main())
