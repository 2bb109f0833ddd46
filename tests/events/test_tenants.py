"""Tenants through the outbox, a consumer, idempotency keys, scheduled commands and process instances.

On SQLite and on PostgreSQL (a schema of the test's own): an event recorded for a tenant is handled
with that tenant's context, and nothing keyed by the caller (idempotency keys, schedule keys,
process instances) is shared by two tenants using the same key.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import Command, CommandBus, Context, Principal
from cqrskit.events import (
    CommandScheduler,
    Consumer,
    Event,
    EventBus,
    Idempotency,
    LocalTransport,
    OutboxPublisher,
    ScheduleRunner,
    create_event_tables,
)
from cqrskit.processes import (
    Deadline,
    ProcessManager,
    ProcessStatus,
    Reaction,
    Send,
    Step,
    continues,
    deadline,
    starts,
)
from cqrskit.sqlalchemy import Database, Transaction
from tests.database.journal_app import eventually

ACME = Context(Principal("u1"), tenant="acme")
GLOBEX = Context(Principal("u1"), tenant="globex")


@attrs.frozen
class UserRegistered(Event):
    user_id: str


@attrs.frozen
class RegisterUser(Command[str]):
    user_id: str


@attrs.frozen
class Remind(Command[None]):
    user_id: str


class RegisterUserHandler:
    """Publishes UserRegistered and returns a new registration id (a second run returns another one)."""

    def __init__(self, events: OutboxPublisher) -> None:
        self.events = events
        self.runs: list[str | None] = []

    async def handle(self, command: RegisterUser, context: Context) -> str:
        self.runs.append(context.tenant)
        await self.events.publish(UserRegistered(command.user_id))
        return uuid.uuid4().hex


class Seen:
    """A subscriber or command handler that records the tenant each message came with."""

    def __init__(self) -> None:
        self.tenants: list[tuple[str, str | None]] = []

    async def handle(self, message: Any, context: Context) -> None:
        self.tenants.append((type(message).__name__ + ":" + message.user_id, context.tenant))


@attrs.frozen
class Onboarding:
    user_id: str


class OnboardingProcess:
    def reactions(self) -> Sequence[Reaction[Onboarding, Remind]]:
        return (starts(UserRegistered, lambda e: e.user_id, self.registered),)

    async def registered(self, event: UserRegistered) -> Step[Onboarding, Remind]:
        return Step(Onboarding(event.user_id))


@attrs.define
class Service:
    database: Database
    schema: str | None
    register: RegisterUserHandler
    seen: Seen
    commands: CommandBus
    consumer: Consumer
    scheduler: CommandScheduler
    runner: ScheduleRunner
    process: ProcessManager[Onboarding, Remind]
    tasks: list[asyncio.Task[None]] = attrs.Factory(list)

    async def start(self) -> None:
        self.tasks.append(asyncio.create_task(self.consumer.run()))
        self.tasks.append(asyncio.create_task(self.runner.run()))
        await asyncio.wait_for(self.consumer.started(), 10)

    async def stop(self) -> None:
        await self.consumer.stop()
        self.runner.stop()
        await asyncio.gather(*self.tasks)

    async def inbox_tenants(self) -> list[str | None]:
        table = "cqrskit_inbox" if self.schema is None else f'"{self.schema}".cqrskit_inbox'
        async with self.database.read_session() as session:
            rows = await session.execute(sa.text(f"SELECT tenant FROM {table}"))
            return sorted(rows.scalars(), key=str)


@pytest.fixture(params=["sqlite", "postgresql"])
async def service(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> AsyncIterator[Service]:
    """The embedded service on a database of the test's own; its schema is dropped afterwards."""
    if request.param == "sqlite":
        url, schema = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}", None
    else:
        url, schema = request.getfixturevalue("postgres_url"), unique_name
    database = Database(url)
    transport = LocalTransport(database, schema=schema, poll_interval=0.05)
    publisher = OutboxPublisher(database, schema=schema, wake=transport.wake)
    register = RegisterUserHandler(publisher)
    seen = Seen()
    scheduler = CommandScheduler(database, schema=schema)
    process = ProcessManager(OnboardingProcess(), name="onboarding", state=Onboarding, scheduler=scheduler)
    commands = CommandBus(
        {RegisterUser: register, Remind: seen},
        [Transaction(database), publisher, Idempotency(database, schema=schema)],
    )
    events = EventBus({UserRegistered: {"seen": seen, "onboarding": process}})
    consumer = Consumer(
        transport, events, database, types={"UserRegistered": UserRegistered}, queue="users", schema=schema
    )
    runner = ScheduleRunner(scheduler, commands, poll_interval=0.05)
    await create_event_tables(database, schema)
    await process.create_tables()
    made = Service(database, schema, register, seen, commands, consumer, scheduler, runner, process)
    try:
        yield made
    finally:
        await made.stop()
        if schema is not None:
            async with database.engine.begin() as connection:
                await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await database.dispose()


class TestOutboxAndConsumer:
    """An event keeps its tenant from the command that recorded it to the subscribers that handle it."""

    async def test_each_event_is_handled_with_its_tenants_context(self, service: Service) -> None:
        """Acme's and Globex's registrations of user 1 reach the subscriber as Acme's and Globex's."""
        await service.start()
        (await service.commands.execute(RegisterUser("1"), ACME)).unwrap()
        (await service.commands.execute(RegisterUser("1"), GLOBEX)).unwrap()

        async def committed() -> bool:  # the subscribers run in the consumer's transaction: wait for it
            return len(await service.inbox_tenants()) == 4  # two events, two subscribers each

        await eventually(committed, what="both events handled")
        assert sorted(service.seen.tenants, key=str) == [
            ("UserRegistered:1", "acme"),
            ("UserRegistered:1", "globex"),
        ]
        assert await service.inbox_tenants() == ["acme", "acme", "globex", "globex"]

    async def test_one_correlation_key_in_two_tenants_is_two_instances(self, service: Service) -> None:
        """Onboarding of user 1 starts in Acme, in Globex, and (no tenant) once more: three instances."""
        await service.start()
        for context in (ACME, GLOBEX, Context(Principal("u1"))):
            (await service.commands.execute(RegisterUser("1"), context)).unwrap()

        async def committed() -> bool:
            return len(await service.inbox_tenants()) == 6  # three events, two subscribers each

        await eventually(committed, what="the three events handled")
        for tenant in ("acme", "globex", None):
            instance = await service.process.instance("1", tenant=tenant)
            assert instance is not None, tenant
            assert instance.version == 1
            assert len(instance.history) == 1
        assert await service.process.instance("1", tenant="initech") is None


class TestIdempotency:
    """An idempotency key is the tenant's: the same key from two tenants is two operations."""

    async def test_the_same_key_from_two_tenants_runs_twice(self, service: Service) -> None:
        """Acme and Globex send key k1 (same principal id): two runs, two results; Acme's repeat runs none."""
        acme = Context(Principal("u1"), idempotency_key="k1", tenant="acme")
        globex = Context(Principal("u1"), idempotency_key="k1", tenant="globex")
        first = (await service.commands.execute(RegisterUser("1"), acme)).unwrap()
        other = (await service.commands.execute(RegisterUser("1"), globex)).unwrap()
        again = await service.commands.execute(RegisterUser("1"), acme)
        assert other != first
        assert again.data == first
        assert service.register.runs == ["acme", "globex"]


class TestScheduledCommands:
    """A scheduled command keeps its tenant, and a schedule key is the tenant's."""

    async def test_a_scheduled_command_runs_with_its_tenant(self, service: Service) -> None:
        """Two tenants schedule under one key: neither replaces the other, each runs with its own tenant."""
        await service.scheduler.schedule(Remind("1"), key="remind:1", context=ACME)
        await service.scheduler.schedule(Remind("1"), key="remind:1", context=GLOBEX)
        await service.start()

        async def both() -> bool:
            return len(service.seen.tenants) == 2

        await eventually(both, what="both scheduled commands run")
        assert sorted(service.seen.tenants, key=str) == [("Remind:1", "acme"), ("Remind:1", "globex")]

    async def test_cancel_takes_back_its_own_tenants_command_only(self, service: Service) -> None:
        """Globex cancels remind:1: Acme's command under the same key still runs."""
        await service.scheduler.schedule(Remind("1"), key="remind:1", context=ACME)
        await service.scheduler.schedule(Remind("1"), key="remind:1", context=GLOBEX)
        assert await service.scheduler.cancel("remind:1", context=GLOBEX)
        assert not await service.scheduler.cancel("remind:1", context=Context())
        await service.start()

        async def acme_ran() -> bool:
            return bool(service.seen.tenants)

        await eventually(acme_ran, what="Acme's scheduled command run")
        assert await service.runner.run_once() == 0
        assert service.seen.tenants == [("Remind:1", "acme")]


@attrs.frozen
class UserLeft(Event):
    user_id: str


@attrs.frozen
class Welcome(Command[None]):
    user_id: str


@attrs.frozen
class Unwelcome(Command[None]):
    user_id: str


class WelcomeProcess:
    """Welcomes a user (undone by Unwelcome), reminds them after an hour, compensates when they leave."""

    def reactions(self) -> Sequence[Reaction[Onboarding, Command[None]]]:
        return (
            starts(UserRegistered, lambda e: e.user_id, self.registered),
            continues(UserLeft, lambda e: e.user_id, self.left),
            deadline(Remind, lambda c: c.user_id, self.reminded),
        )

    async def registered(self, event: UserRegistered) -> Step[Onboarding, Command[None]]:
        return Step(
            Onboarding(event.user_id),
            send=[Send(Welcome(event.user_id), compensation=Unwelcome(event.user_id))],
            deadlines=[Deadline(Remind(event.user_id), after=3600)],
        )

    async def left(self, event: UserLeft, state: Onboarding) -> Step[Onboarding, Command[None]]:
        return Step(state, compensate=True)

    async def reminded(self, command: Remind, state: Onboarding) -> Step[Onboarding, Command[None]]:
        return Step(state)


class TestProcessSteps:
    """What a tenant's process instance sends, sets and cancels is that tenant's."""

    async def test_deadlines_and_compensations_stay_in_their_tenant(self, service: Service) -> None:
        """Acme's user 1 leaves: Acme's reminder goes, Acme's Unwelcome comes; Globex's rows stay."""
        process = ProcessManager(
            WelcomeProcess(), name="welcome", state=Onboarding, scheduler=service.scheduler
        )
        await process.handle(UserRegistered("1"), ACME)
        await process.handle(UserRegistered("1"), GLOBEX)
        await process.handle(UserLeft("1"), ACME)
        table = "cqrskit_scheduled_commands"
        if service.schema is not None:
            table = f'"{service.schema}".{table}'
        async with service.database.read_session() as session:
            rows = (await session.execute(sa.text(f"SELECT tenant, name, headers FROM {table}"))).all()
        assert sorted((row.tenant, row.name) for row in rows) == [
            ("acme", "Unwelcome"),
            ("acme", "Welcome"),
            ("globex", "Remind"),
            ("globex", "Welcome"),
        ]
        assert all(json.loads(row.headers)["tenant"] == row.tenant for row in rows)
        acme = await process.instance("1", tenant="acme")
        globex = await process.instance("1", tenant="globex")
        assert acme is not None
        assert globex is not None
        assert (acme.status, globex.status) == (ProcessStatus.COMPENSATED, ProcessStatus.RUNNING)
