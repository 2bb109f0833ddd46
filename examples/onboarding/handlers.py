"""The onboarding example's command handlers: accounts and welcome tasks in two small tables."""

from __future__ import annotations

import sqlalchemy as sa

from cqrskit import Context, NotFoundError
from cqrskit.events import EventPublisher
from cqrskit.sqlalchemy import Database
from examples.onboarding.messages import (
    ActivateUser,
    CancelWelcomeTask,
    CreateUser,
    CreateWelcomeTask,
    DisableAccount,
    UserActivated,
    UserCreated,
)

metadata = sa.MetaData()
accounts = sa.Table(
    "onboarding_accounts",
    metadata,
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # new, active, disabled
)
tasks = sa.Table(
    "onboarding_tasks",
    metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open, cancelled
)


class CreateUserHandler:
    def __init__(self, database: Database, events: EventPublisher) -> None:
        self._database, self._events = database, events

    async def handle(self, command: CreateUser, context: Context) -> None:
        await self._database.session.execute(
            sa.insert(accounts).values(user_id=command.user_id, email=command.email, status="new")
        )
        await self._events.publish(UserCreated(command.user_id))


class ActivateUserHandler:
    def __init__(self, database: Database, events: EventPublisher) -> None:
        self._database, self._events = database, events

    async def handle(self, command: ActivateUser, context: Context) -> None:
        changed = await self._database.session.execute(
            sa.update(accounts)
            .where(accounts.c.user_id == command.user_id, accounts.c.status == "new")
            .values(status="active")
            .returning(accounts.c.user_id)
        )
        if changed.first() is None:
            raise NotFoundError(f"no new account {command.user_id!r}")
        await self._events.publish(UserActivated(command.user_id))


class DisableAccountHandler:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def handle(self, command: DisableAccount, context: Context) -> None:
        await self._database.session.execute(
            sa.update(accounts).where(accounts.c.user_id == command.user_id).values(status="disabled")
        )


class CreateWelcomeTaskHandler:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def handle(self, command: CreateWelcomeTask, context: Context) -> None:
        await self._database.session.execute(
            sa.insert(tasks).values(task_id=command.task_id, user_id=command.user_id, status="open")
        )


class CancelWelcomeTaskHandler:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def handle(self, command: CancelWelcomeTask, context: Context) -> None:
        await self._database.session.execute(
            sa.update(tasks).where(tasks.c.task_id == command.task_id).values(status="cancelled")
        )
