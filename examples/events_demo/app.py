"""The events demo's messages, handlers and container.

- API side: `CreateUser`, `UpdateUser`, `DeleteUser` write the ``users`` table and publish
  `UserCreated`, `UserUpdated`, `UserDeleted` through the outbox, in the same transaction.
- Relay: `OutboxRelay` moves the outbox to RabbitMQ.
- Worker: a `Consumer` hands the events to an `EventBus`; its `UserStatsProjection` dispatches
  `ApplyUserStatsChange` on the worker's command bus, which updates the denormalised ``user_stats``
  table in the consumer's transaction and invalidates `GetUserStats`'s cache tag (through
  `CacheInvalidation`) after that transaction commits (the API command's own invalidation would
  come before the read model changed).

In production the three sides are separate processes built from the same container; the demo runs
them as tasks of one process.
"""

from __future__ import annotations

import uuid

import attrs
import sqlalchemy as sa
from dependency_injector import containers, providers

from cqrskit import (
    AffectedEntity,
    Command,
    CommandBus,
    Context,
    NotFoundError,
    Query,
    QueryBus,
    Result,
)
from cqrskit.behaviours import CacheInvalidation, CachePolicy, QueryCache
from cqrskit.caching import cache_from_url
from cqrskit.events import (
    Consumer,
    Event,
    EventBus,
    OutboxPublisher,
    OutboxRelay,
    RabbitMQTransport,
)
from cqrskit.sqlalchemy import Database, Transaction

# Messages -------------------------------------------------------------------------------------


@attrs.frozen
class UserCreated(Event):
    user_id: str
    email: str

    def ordering_key(self) -> str:
        return f"user:{self.user_id}"


@attrs.frozen
class UserUpdated(Event):
    user_id: str
    fields: tuple[str, ...]

    def ordering_key(self) -> str:
        return f"user:{self.user_id}"


@attrs.frozen
class UserDeleted(Event):
    user_id: str

    def ordering_key(self) -> str:
        return f"user:{self.user_id}"


@attrs.frozen
class CreateUser(Command[str]):
    email: str


@attrs.frozen
class UpdateUser(Command[None]):
    user_id: str
    email: str


@attrs.frozen
class DeleteUser(Command[None]):
    user_id: str


@attrs.frozen
class ApplyUserStatsChange(Command[None]):
    """Worker-side command: move the counters of the user_stats read model."""

    created: int = 0
    updated: int = 0
    deleted: int = 0


@attrs.frozen
class UserStats:
    total: int
    created: int
    updated: int
    deleted: int


@attrs.frozen
class GetUserStats(Query[UserStats]):
    pass


# Tables -------------------------------------------------------------------------------------


@attrs.frozen
class Tables:
    users: sa.Table
    user_stats: sa.Table

    @classmethod
    def in_schema(cls, schema: str) -> Tables:
        metadata = sa.MetaData(schema=schema)
        users = sa.Table(
            "users",
            metadata,
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("email", sa.String(255), nullable=False),
        )
        user_stats = sa.Table(
            "user_stats",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("created", sa.Integer, nullable=False),
            sa.Column("updated", sa.Integer, nullable=False),
            sa.Column("deleted", sa.Integer, nullable=False),
        )
        return cls(users, user_stats)

    async def create(self, database: Database) -> None:
        async with database.engine.begin() as connection:
            await connection.run_sync(self.users.metadata.create_all)
            await connection.execute(sa.insert(self.user_stats).values(id=1, created=0, updated=0, deleted=0))


# API side -----------------------------------------------------------------------------------


class CreateUserHandler:
    def __init__(self, database: Database, tables: Tables, events: OutboxPublisher) -> None:
        self._database, self._tables, self._events = database, tables, events

    async def handle(self, command: CreateUser, _context: Context) -> str:
        user_id = str(uuid.uuid4())
        await self._database.session.execute(
            sa.insert(self._tables.users).values(id=user_id, email=command.email)
        )
        await self._events.publish(UserCreated(user_id, command.email))
        return user_id


class UpdateUserHandler:
    def __init__(self, database: Database, tables: Tables, events: OutboxPublisher) -> None:
        self._database, self._tables, self._events = database, tables, events

    async def handle(self, command: UpdateUser, _context: Context) -> None:
        users = self._tables.users
        changed = await self._database.session.execute(
            sa.update(users).where(users.c.id == command.user_id).values(email=command.email)
        )
        if changed.rowcount == 0:  # type: ignore[attr-defined]  # a CursorResult for an UPDATE
            raise NotFoundError(f"no user {command.user_id}")
        await self._events.publish(UserUpdated(command.user_id, ("email",)))


class DeleteUserHandler:
    def __init__(self, database: Database, tables: Tables, events: OutboxPublisher) -> None:
        self._database, self._tables, self._events = database, tables, events

    async def handle(self, command: DeleteUser, _context: Context) -> None:
        users = self._tables.users
        deleted = await self._database.session.execute(sa.delete(users).where(users.c.id == command.user_id))
        if deleted.rowcount == 0:  # type: ignore[attr-defined]  # a CursorResult for a DELETE
            raise NotFoundError(f"no user {command.user_id}")
        await self._events.publish(UserDeleted(command.user_id))


class GetUserStatsHandler:
    def __init__(self, database: Database, tables: Tables) -> None:
        self._database, self._tables = database, tables

    async def handle(self, _query: GetUserStats, _context: Context) -> UserStats:
        stats = self._tables.user_stats
        async with self._database.read_session() as session:
            row = (await session.execute(sa.select(stats).where(stats.c.id == 1))).one()
        return UserStats(row.created - row.deleted, row.created, row.updated, row.deleted)


# Worker side --------------------------------------------------------------------------------

STATS_TAG = ("user_stats", "*")


class ApplyUserStatsChangeHandler:
    def __init__(self, database: Database, tables: Tables) -> None:
        self._database, self._tables = database, tables

    async def handle(self, command: ApplyUserStatsChange, _context: Context) -> Result[None]:
        stats = self._tables.user_stats
        await self._database.session.execute(
            sa.update(stats)
            .where(stats.c.id == 1)
            .values(
                created=stats.c.created + command.created,
                updated=stats.c.updated + command.updated,
                deleted=stats.c.deleted + command.deleted,
            )
        )
        # CacheInvalidation drops GetUserStats's cached entries once the consumer's
        # transaction, which this command joined, has committed.
        return Result.success(None, affected_entities=[AffectedEntity(*STATS_TAG, "updated")])


class UserStatsProjection:
    """Keeps user_stats in step with the user events, through the worker's command bus."""

    def __init__(self, command_bus: CommandBus) -> None:
        self._command_bus = command_bus

    async def handle(self, event: UserCreated | UserUpdated | UserDeleted, context: Context) -> None:
        if isinstance(event, UserCreated):
            change = ApplyUserStatsChange(created=1)
        elif isinstance(event, UserUpdated):
            change = ApplyUserStatsChange(updated=1)
        else:
            change = ApplyUserStatsChange(deleted=1)
        (await self._command_bus.execute(change, context.child())).unwrap()


# Wiring -------------------------------------------------------------------------------------


def stats_tags(_query: GetUserStats) -> list[tuple[str, str]]:
    """GetUserStats depends on every user_stats entity."""
    return [STATS_TAG]


class Container(containers.DeclarativeContainer):
    config = providers.Configuration()
    database = providers.Singleton(Database, url=config.database_url)
    tables = providers.Singleton(Tables.in_schema, schema=config.schema)
    # Redis when the API and the worker run in separate processes (they must share it); in memory
    # when the demo runs every side in one process (no cache_url).
    cache = providers.Singleton(cache_from_url, config.cache_url, namespace=config.schema)
    transport = providers.Singleton(RabbitMQTransport, url=config.rabbitmq_url, exchange=config.exchange)
    outbox = providers.Singleton(OutboxPublisher, database=database, schema=config.schema)

    # API side
    create_user = providers.Factory(CreateUserHandler, database=database, tables=tables, events=outbox)
    update_user = providers.Factory(UpdateUserHandler, database=database, tables=tables, events=outbox)
    delete_user = providers.Factory(DeleteUserHandler, database=database, tables=tables, events=outbox)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict({CreateUser: create_user, UpdateUser: update_user, DeleteUser: delete_user}),
        behaviours=providers.List(providers.Singleton(Transaction, database=database), outbox),
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict(
            {GetUserStats: providers.Factory(GetUserStatsHandler, database=database, tables=tables)}
        ),
        behaviours=providers.List(
            providers.Singleton(
                QueryCache,
                cache=cache,
                policies=providers.Dict(
                    {GetUserStats: providers.Factory(CachePolicy, ttl=300, tags=stats_tags)}
                ),
            )
        ),
    )

    # Relay
    relay = providers.Singleton(OutboxRelay, database=database, transport=transport, schema=config.schema)

    # Worker side
    worker_command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                ApplyUserStatsChange: providers.Factory(
                    ApplyUserStatsChangeHandler, database=database, tables=tables
                )
            }
        ),
        # CacheInvalidation outside Transaction, as the canonical order has it.
        behaviours=providers.List(
            providers.Singleton(CacheInvalidation, cache=cache),
            providers.Singleton(Transaction, database=database),
        ),
    )
    user_stats_projection = providers.Factory(UserStatsProjection, command_bus=worker_command_bus)
    event_bus = providers.Singleton(
        EventBus,
        handlers=providers.Dict(
            {
                UserCreated: providers.Dict(user_stats=user_stats_projection),
                UserUpdated: providers.Dict(user_stats=user_stats_projection),
                UserDeleted: providers.Dict(user_stats=user_stats_projection),
            }
        ),
    )
    consumer = providers.Singleton(
        Consumer,
        transport=transport,
        bus=event_bus,
        database=database,
        types=providers.Object(
            {"UserCreated": UserCreated, "UserUpdated": UserUpdated, "UserDeleted": UserDeleted}
        ),
        queue=config.queue,
        schema=config.schema,
    )
