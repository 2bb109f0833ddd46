"""A tiny in-memory app on cqrskit: run it with ``python -m examples.demo`` from the repository root.

One command and one query, their handlers declared in a dependency-injector container, and two small
behaviours: one that times each dispatch and one that checks ``message.validate()``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID, uuid4

import attrs
from dependency_injector import containers, providers

from cqrskit import (
    CallNext,
    Command,
    CommandBus,
    Context,
    NotFoundError,
    OperationStatus,
    Principal,
    Query,
    QueryBus,
    Result,
)

# Messages --------------------------------------------------------------------------------------


@attrs.frozen
class CreateThing(Command[UUID]):
    name: str

    def validate(self) -> dict[str, str]:
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


# Behaviours: plain async functions ----------------------------------------------------------------


async def timing(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
    """Outermost: print how each dispatch ended and how long it took."""
    name, started = type(message).__name__, time.perf_counter()
    try:
        result = await call_next(message, context)
    except Exception as exc:
        # Exceptions travel up through the behaviours; the bus turns them into a Result after this.
        print(f"  [{name}] raised {type(exc).__name__}, operation {context.operation_id}")
        raise
    elapsed_us = (time.perf_counter() - started) * 1e6
    print(f"  [{name}] {result.status} in {elapsed_us:.0f} us, operation {context.operation_id}")
    return result


async def validation(message: Any, context: Context, call_next: CallNext) -> Result[Any]:
    """Refuse a message whose ``validate()`` names bad fields, before its handler runs."""
    errors = message.validate()
    if errors:
        return Result.failure(OperationStatus.VALIDATION_ERROR, errors)
    return await call_next(message, context)


# The composition root --------------------------------------------------------------------------


class Container(containers.DeclarativeContainer):
    things = providers.Singleton(InMemoryThings)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict({CreateThing: providers.Factory(CreateThingHandler, things=things).provider}),
        behaviours=providers.List(providers.Object(timing), providers.Object(validation)),
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict({GetThing: providers.Factory(GetThingHandler, things=things).provider}),
        behaviours=providers.List(providers.Object(timing)),
    )


async def main() -> None:
    container = Container()
    commands, queries = container.command_bus(), container.query_bus()
    context = Context(principal=Principal("demo-user"), correlation_id="demo-request-1")

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


if __name__ == "__main__":
    asyncio.run(main())
