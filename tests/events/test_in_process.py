"""InProcessPublisher: events delivered after the outermost commit, never for a rolled-back attempt."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from dependency_injector import containers, providers

from cqrskit import Command, CommandBus, ConfigurationError, Context, OperationStatus, Result
from cqrskit.behaviours import Retry, RetryPolicy, Timeout
from cqrskit.events import Event, EventBus, InProcessPublisher
from cqrskit.sqlalchemy import Database, Transaction


class Flaky(Exception):
    """A failure Retry is told to retry."""


@attrs.frozen
class Registered(Event):
    name: str


@attrs.frozen
class Register(Command[str]):
    name: str
    fail_attempts: int = 0
    fail_with_result: bool = False
    locked_attempts: int = 0


@attrs.frozen
class Greet(Command[None]):
    name: str


@attrs.frozen
class RegisterPair(Command[str]):
    """Register `first` and `second` as two nested commands; `then` says how the outer one ends."""

    first: str
    second: str
    then: str = "succeed"  # or "raise" (after both nested commands), or "second_fails"


NAMES = sa.Table("names", sa.MetaData(), sa.Column("name", sa.String, primary_key=True))


class World:
    """What the test observes: subscriber calls, and whether the row was committed at that moment."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.delivered: list[tuple[Registered, Context, bool, bool]] = []
        self.attempts = 0
        self.greeted: list[str] = []
        self.delivered_while_open: list[int] = []


class RegisterHandler:
    def __init__(self, world: World, publisher: InProcessPublisher) -> None:
        self.world = world
        self.publisher = publisher

    async def handle(self, command: Register, context: Context) -> Any:
        self.world.attempts += 1
        await self.world.database.session.execute(sa.insert(NAMES).values(name=command.name))
        await self.publisher.publish(Registered(command.name))
        if self.world.attempts <= command.fail_attempts:
            raise Flaky
        if self.world.attempts <= command.locked_attempts:  # what SQLAlchemy raises for SQLITE_BUSY
            raise sa.exc.OperationalError("INSERT", None, sqlite3.OperationalError("database is locked"))
        if command.fail_with_result:
            return Result.failure(OperationStatus.CONFLICT)
        return command.name


class RegisterPairHandler:
    """Dispatches two nested Register commands through the same bus, then ends as told."""

    def __init__(self, world: World, container: Any) -> None:
        self.world = world
        self.container = container

    async def handle(self, command: RegisterPair, context: Context) -> str:
        bus = self.container.command_bus()
        assert (await bus.execute(Register(command.first), context.child())).is_success
        second = Register(command.second, fail_with_result=command.then == "second_fails")
        await bus.execute(second, context.child())
        self.world.delivered_while_open.append(len(self.world.delivered))
        if command.then == "raise":
            raise RuntimeError("the outer command fails after its nested commands succeeded")
        return command.first


class OnRegistered:
    """Records the delivery, whether the row is committed, and whether a session is open."""

    def __init__(self, world: World, container: Any) -> None:
        self.world = world
        self.container = container

    async def handle(self, event: Registered, context: Context) -> None:
        async with self.world.database.read_session() as session:
            committed = (
                await session.scalar(sa.select(sa.func.count()).where(NAMES.c.name == event.name)) == 1
            )
        self.world.delivered.append((event, context, committed, self.world.database.in_transaction()))
        result = await self.container.command_bus().execute(Greet(event.name), context)
        assert result.is_success


class GreetHandler:
    def __init__(self, world: World) -> None:
        self.world = world

    async def handle(self, command: Greet, context: Context) -> None:
        self.world.greeted.append(command.name)


class Container(containers.DeclarativeContainer):
    __self__ = providers.Self()
    database = providers.Dependency(instance_of=Database)
    world = providers.Singleton(World, database=database)
    event_bus = providers.Singleton(
        EventBus,
        handlers=providers.Dict(
            {Registered: providers.List(providers.Factory(OnRegistered, world=world, container=__self__))}
        ),
    )
    publisher = providers.Singleton(InProcessPublisher, event_bus=event_bus)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                Register: providers.Factory(RegisterHandler, world=world, publisher=publisher),
                Greet: providers.Factory(GreetHandler, world=world),
                RegisterPair: providers.Factory(RegisterPairHandler, world=world, container=__self__),
            }
        ),
        behaviours=providers.List(
            providers.Singleton(Retry, RetryPolicy(max_attempts=3, delay=0, retry_on=(Flaky,))),
            providers.Singleton(Transaction, database=database),
            publisher,
        ),
    )


@pytest.fixture
async def container() -> AsyncIterator[Container]:
    database = Database()
    async with database.engine.begin() as connection:
        await connection.run_sync(NAMES.metadata.create_all)
    container = Container(database=database)
    yield container
    await database.dispose()


class TestInProcessPublisher:
    """Events published by a handler reach subscribers only once the command's work is durable."""

    async def test_delivered_after_commit_before_execute_returns(self, container: Container) -> None:
        """The subscriber runs before execute returns, sees the committed row, and no session is open."""
        result = await container.command_bus().execute(Register("ada"), Context(correlation_id="c-1"))
        assert result.unwrap() == "ada"
        [(event, context, committed, in_transaction)] = container.world().delivered
        assert event == Registered("ada")
        assert committed
        assert not in_transaction
        assert context.correlation_id == "c-1"
        assert context.causation_id == result.operation_id

    async def test_a_subscriber_may_dispatch_a_command(self, container: Container) -> None:
        """Outside the committed session a subscriber's own command runs in a transaction of its own."""
        await container.command_bus().execute(Register("bob"))
        assert container.world().greeted == ["bob"]

    async def test_nothing_delivered_for_an_attempt_retry_discarded(self, container: Container) -> None:
        """Two attempts fail and roll back, the third commits: exactly one delivery."""
        result = await container.command_bus().execute(Register("cy", fail_attempts=2))
        assert result.is_success
        assert container.world().attempts == 3
        assert [e.name for e, *_ in container.world().delivered] == ["cy"]

    async def test_a_locked_database_retried_by_the_default_classifier_delivers_once(
        self, container: Container
    ) -> None:
        """Attempt one publishes, then hits SQLITE_BUSY; the default classifier retries: one delivery."""
        result = await container.command_bus().execute(Register("cal", locked_attempts=1))
        assert result.is_success
        assert container.world().attempts == 2
        assert [(e.name, committed) for e, _, committed, _ in container.world().delivered] == [("cal", True)]

    async def test_nothing_delivered_for_a_failure_result(self, container: Container) -> None:
        """A handler that returns a failure Result rolls back and publishes nothing."""
        result = await container.command_bus().execute(Register("dee", fail_with_result=True))
        assert result.is_failure
        assert container.world().delivered == []

    async def test_nested_commands_deliver_after_the_outermost_commit(self, container: Container) -> None:
        """Two nested commands publish; nothing goes out until the outer command commits, then both."""
        result = await container.command_bus().execute(RegisterPair("n1", "n2"))
        assert result.unwrap() == "n1"
        world = container.world()
        assert world.delivered_while_open == [0]
        assert [(e.name, committed, in_tx) for e, _, committed, in_tx in world.delivered] == [
            ("n1", True, False),
            ("n2", True, False),
        ]

    async def test_nothing_delivered_when_the_outer_command_fails(self, container: Container) -> None:
        """Nested commands that succeeded inside an outer command that then fails deliver nothing."""
        result = await container.command_bus().execute(RegisterPair("o1", "o2", then="raise"))
        assert result.status is OperationStatus.FAILED
        assert container.world().delivered == []
        async with container.database().read_session() as session:
            assert await session.scalar(sa.select(sa.func.count()).select_from(NAMES)) == 0

    async def test_a_failed_nested_command_drops_only_its_own_events(self, container: Container) -> None:
        """The second nested command fails (its savepoint rolls back); the first one's event still goes."""
        result = await container.command_bus().execute(RegisterPair("p1", "p2", then="second_fails"))
        assert result.is_success
        assert [e.name for e, *_ in container.world().delivered] == ["p1"]

    async def test_without_a_transaction_delivered_after_the_handler(self) -> None:
        """With no Transaction on the bus, events go out once the handler has returned successfully."""
        order: list[str] = []

        class Sub:
            async def handle(self, event: Registered, context: Context) -> None:
                order.append("subscriber")

        publisher = InProcessPublisher(EventBus({Registered: [Sub()]}))

        class Handler:
            async def handle(self, command: Register, context: Context) -> str:
                await publisher.publish(Registered(command.name))
                order.append("handler done")
                if command.fail_attempts:
                    raise Flaky
                return command.name

        bus = CommandBus({Register: Handler()}, [publisher])
        assert (await bus.execute(Register("e"))).is_success
        assert order == ["handler done", "subscriber"]
        order.clear()
        assert (await bus.execute(Register("f", fail_attempts=1))).is_failure
        assert order == ["handler done"]

    async def test_a_deadline_during_delivery_keeps_the_commits_outcome(self) -> None:
        """The command's Timeout expires while a subscriber runs: it finishes, and execute reports SUCCESS."""
        caller = asyncio.current_task()
        assert caller is not None
        finished: list[str] = []

        class OutlivesTheDeadline:
            async def handle(self, event: Registered, context: Context) -> None:
                async with asyncio.timeout(10):
                    while caller.cancelling() == 0:  # noqa: ASYNC110 - no Event signals a cancel request
                        await asyncio.sleep(0.005)
                finished.append(event.name)

        database = Database()
        try:
            async with database.engine.begin() as connection:
                await connection.run_sync(NAMES.metadata.create_all)
            publisher = InProcessPublisher(EventBus({Registered: [OutlivesTheDeadline()]}))
            world = World(database)
            bus = CommandBus(
                {Register: RegisterHandler(world, publisher)},
                [Timeout(default=0.05), Transaction(database), publisher],
            )
            result = await bus.execute(Register("late"))
            assert result.unwrap() == "late"
            assert finished == ["late"]
        finally:
            await database.dispose()

    async def test_publish_outside_a_dispatch_delivers_at_once(self) -> None:
        """Called directly with no transaction open, publish delivers straight away with a child context."""
        seen: list[Context] = []

        class Sub:
            async def handle(self, event: Registered, context: Context) -> None:
                seen.append(context)

        publisher = InProcessPublisher(EventBus({Registered: [Sub()]}))
        await publisher.publish(Registered("g"), Context(correlation_id="x", operation_id="op"))
        assert [(c.correlation_id, c.causation_id) for c in seen] == [("x", "op")]

    def test_it_must_sit_inside_retry_and_transaction(self) -> None:
        """Listing the publisher outside Transaction is refused when the bus is built."""
        database = Database()
        publisher = InProcessPublisher(EventBus({}))
        with pytest.raises(ConfigurationError):
            CommandBus({Greet: GreetHandler(World(database))}, [publisher, Transaction(database)])


class TestPublishersCalledDirectly:
    """InProcessPublisher works as a behaviour called with a fake next step, and beside an outbox."""

    async def test_in_process_publisher_delivers_after_a_successful_next_step(self) -> None:
        """Events published inside call_next go out after it returns, with the child context."""
        seen: list[tuple[Registered, Context]] = []

        class Sub:
            async def handle(self, event: Registered, context: Context) -> None:
                seen.append((event, context))

        publisher = InProcessPublisher(EventBus({Registered: [Sub()]}))

        async def call_next(message: Any, context: Context) -> Result[Any]:
            await publisher.publish(Registered("h"))
            assert seen == []  # not yet: the handler has not returned
            return Result.success("h")

        context = Context(correlation_id="c", operation_id="op")
        result = await publisher(Register("h"), context, call_next)
        assert result.data == "h"
        assert [(e.name, c.causation_id) for e, c in seen] == [("h", "op")]

    async def test_in_process_publisher_drops_events_of_a_failed_next_step(self) -> None:
        """A failure Result from call_next means nothing is delivered."""
        seen: list[Registered] = []

        class Sub:
            async def handle(self, event: Registered, context: Context) -> None:
                seen.append(event)

        publisher = InProcessPublisher(EventBus({Registered: [Sub()]}))

        async def call_next(message: Any, context: Context) -> Result[Any]:
            await publisher.publish(Registered("i"))
            return Result.failure(OperationStatus.CONFLICT)

        assert (await publisher(Register("i"), Context(operation_id="op"), call_next)).is_failure
        assert seen == []

    async def test_two_publisher_behaviours_on_one_bus_keep_their_events_apart(self) -> None:
        """An InProcessPublisher outside an OutboxPublisher still delivers what is published to it."""
        from cqrskit.events import OutboxPublisher, create_event_tables

        seen: list[Registered] = []

        class Sub:
            async def handle(self, event: Registered, context: Context) -> None:
                seen.append(event)

        database = Database()
        try:
            await create_event_tables(database)
            in_process = InProcessPublisher(EventBus({Registered: [Sub()]}))
            outbox = OutboxPublisher(database)

            class Handler:
                async def handle(self, command: Register, context: Context) -> str:
                    await in_process.publish(Registered(command.name))
                    await outbox.publish(Registered(command.name))
                    return command.name

            bus = CommandBus({Register: Handler()}, [Transaction(database), in_process, outbox])
            assert (await bus.execute(Register("k"))).is_success
            assert seen == [Registered("k")]
        finally:
            await database.dispose()
