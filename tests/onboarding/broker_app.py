"""The onboarding example on PostgreSQL behind RabbitMQ, for the crash and dead-letter tests.

The same process, messages and handlers as ``examples.onboarding``, wired for workers: the command
handlers record their events in the outbox (`OutboxPublisher`); an `OutboxRelay` publishes them, and
what the process sends (a `ScheduleForwarder` moves due commands into the outbox); one `Consumer`
runs the events through the event bus (the process manager is their subscriber), another runs the
commands through the command bus. Everything lives in one schema of the test's own: cqrskit's tables
by ``schema=``, the example's by the connections' ``search_path``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from dependency_injector import containers, providers
from examples.onboarding import handlers
from examples.onboarding.messages import (
    ActivateUser,
    ActivationDeadline,
    CancelWelcomeTask,
    CreateUser,
    CreateWelcomeTask,
    DisableAccount,
    UserActivated,
    UserCreated,
)
from examples.onboarding.process import Onboarding, OnboardingState

from cqrskit import CommandBus
from cqrskit.events import (
    CommandScheduler,
    Consumer,
    EventBus,
    OutboxPublisher,
    OutboxRelay,
    RabbitMQTransport,
    ScheduleForwarder,
)
from cqrskit.processes import ProcessManager
from cqrskit.sqlalchemy import Database, Transaction

EVENTS: dict[str, type] = {"UserCreated": UserCreated, "UserActivated": UserActivated}
COMMANDS: dict[str, type] = {
    "CreateWelcomeTask": CreateWelcomeTask,
    "CancelWelcomeTask": CancelWelcomeTask,
    "DisableAccount": DisableAccount,
    "ActivationDeadline": ActivationDeadline,
}


def schema_database(url: str, schema: str) -> Database:
    """A `Database` whose connections find unqualified tables (the example's) in `schema`."""
    return Database(url, engine_options={"connect_args": {"server_settings": {"search_path": schema}}})


def queue_names(exchange: str) -> tuple[str, str]:
    """The events queue and the commands queue of a test's exchange."""
    return f"{exchange}.events", f"{exchange}.commands"


class BrokerContainer(containers.DeclarativeContainer):
    """Config: ``database_url``, ``schema``, ``rabbitmq_url``, ``exchange``, ``activation_delay``."""

    config = providers.Configuration()
    config.activation_delay.from_value(dt.timedelta(hours=1))

    database = providers.Singleton(schema_database, url=config.database_url, schema=config.schema)
    transport: providers.Provider[Any] = providers.Singleton(
        RabbitMQTransport, config.rabbitmq_url, exchange=config.exchange
    )
    scheduler = providers.Singleton(CommandScheduler, database=database, schema=config.schema)
    onboarding = providers.Singleton(
        ProcessManager,
        providers.Factory(Onboarding, activation_delay=config.activation_delay),
        name="onboarding",
        state=OnboardingState,
        scheduler=scheduler,
    )
    event_bus = providers.Singleton(
        EventBus,
        handlers=providers.Dict(
            {
                UserCreated: providers.Dict(onboarding=onboarding),
                UserActivated: providers.Dict(onboarding=onboarding),
            }
        ),
    )
    publisher = providers.Singleton(OutboxPublisher, database=database, schema=config.schema)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                CreateUser: providers.Factory(
                    handlers.CreateUserHandler, database=database, events=publisher
                ),
                ActivateUser: providers.Factory(
                    handlers.ActivateUserHandler, database=database, events=publisher
                ),
                DisableAccount: providers.Factory(handlers.DisableAccountHandler, database=database),
                CreateWelcomeTask: providers.Factory(handlers.CreateWelcomeTaskHandler, database=database),
                CancelWelcomeTask: providers.Factory(handlers.CancelWelcomeTaskHandler, database=database),
                ActivationDeadline: onboarding,
            }
        ),
        behaviours=providers.List(providers.Singleton(Transaction, database=database), publisher),
    )
    event_consumer = providers.Singleton(
        Consumer,
        transport=transport,
        bus=event_bus,
        database=database,
        types=providers.Object(EVENTS),
        queue=providers.Callable(lambda exchange: queue_names(exchange)[0], config.exchange),
        schema=config.schema,
        backoff=0.01,
    )
    command_consumer = providers.Singleton(
        Consumer,
        transport=transport,
        bus=command_bus,
        database=database,
        types=providers.Object(COMMANDS),
        queue=providers.Callable(lambda exchange: queue_names(exchange)[1], config.exchange),
        schema=config.schema,
        backoff=0.01,
        dead_letter_hooks=providers.List(onboarding),
    )
    relay = providers.Singleton(
        OutboxRelay, database=database, transport=transport, schema=config.schema, poll_interval=0.05
    )
    forwarder = providers.Singleton(ScheduleForwarder, scheduler=scheduler, poll_interval=0.05)


def configured(url: str, schema: str, rabbitmq_url: str, exchange: str) -> BrokerContainer:
    """A container on the test's schema and exchange."""
    container = BrokerContainer()
    container.config.database_url.from_value(url)
    container.config.schema.from_value(schema)
    container.config.rabbitmq_url.from_value(rabbitmq_url)
    container.config.exchange.from_value(exchange)
    return container


async def create_tables(container: BrokerContainer) -> None:
    """Create the schema, cqrskit's tables and the example's in it."""
    database = container.database()
    async with database.engine.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{container.config.schema()}"'))
    await container.onboarding().create_tables()
    async with database.engine.begin() as connection:
        await connection.run_sync(handlers.metadata.create_all)
