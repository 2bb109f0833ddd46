"""The onboarding example's container: the process manager wired like any handler.

Embedded (SQLite, no broker): events reach the process through an `InProcessPublisher`, and a
`ScheduleRunner` runs what the process sends and its deadline, and tells the process of a command
it gave up on.
"""

from __future__ import annotations

import datetime as dt

from dependency_injector import containers, providers

from cqrskit import CommandBus
from cqrskit.events import CommandScheduler, EventBus, InProcessPublisher, ScheduleRunner
from cqrskit.processes import ProcessManager
from cqrskit.sqlalchemy import Database, Transaction
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


class Container(containers.DeclarativeContainer):
    config = providers.Configuration()
    config.database_url.from_value(None)
    config.activation_delay.from_value(dt.timedelta(days=7))
    config.poll_interval.from_value(0.2)

    database = providers.Singleton(Database, url=config.database_url)
    scheduler = providers.Singleton(CommandScheduler, database=database)
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
    publisher = providers.Singleton(InProcessPublisher, event_bus=event_bus)
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
    runner = providers.Singleton(
        ScheduleRunner,
        scheduler=scheduler,
        bus=command_bus,
        poll_interval=config.poll_interval,
        # A command the process sent that fails for good makes it compensate (docs/processes.md).
        dead_letter_hooks=providers.List(onboarding),
    )


async def create_tables(container: Container) -> None:
    """Create the example's tables and cqrskit's (process, schedule, inbox) in its database."""
    await container.onboarding().create_tables()
    async with container.database().engine.begin() as connection:
        await connection.run_sync(handlers.metadata.create_all)
