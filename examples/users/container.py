"""The composition root: every handler, every behaviour and every setting of the service, in one place.

``python -m cqrskit routes examples.users.container:Container`` prints what this declares. The API
processes use ``command_bus`` and ``query_bus``; the worker (``python -m examples.users.worker``, only
with a broker) uses ``relay`` and ``consumer``; both build ``event_bus`` and ``stats_bus`` from here.
"""

from __future__ import annotations

from collections.abc import Iterable

from dependency_injector import containers, providers

from cqrskit import CommandBus, QueryBus
from cqrskit.behaviours import (
    Audit,
    Authorization,
    Logging,
    RequirePermissions,
    Retry,
    RetryPolicy,
    StructlogAuditSink,
    Timeout,
    Validation,
)
from cqrskit.caching import CacheInvalidation, CachePolicy, QueryCache, cache_from_url
from cqrskit.events import (
    Consumer,
    EventBus,
    InProcessPublisher,
    NatsTransport,
    OutboxPublisher,
    OutboxRelay,
    RabbitMQTransport,
)
from cqrskit.sqlalchemy import Database, Transaction
from examples.users import handlers, projection
from examples.users.events import EVENT_TYPES, UserCreated, UserDeleted, UserUpdated
from examples.users.messages import (
    ApplyUserStatsChange,
    BatchCreateUsers,
    CreateUser,
    DeleteUser,
    FindUsers,
    GetUser,
    GetUserStats,
    UpdateUser,
)
from examples.users.passwords import PasswordHasher
from examples.users.repositories import UserReadRepository, UserRepository, UserStatsRepository
from examples.users.settings import Settings

READ_RETRY = RetryPolicy(max_attempts=3, delay=0.05, max_delay=0.5)
"""How the query bus retries a read that lost its connection (the default classifier's transient errors)."""

# Who may do what: every message has a rule; admins pass every rule (allow_admin_override).
# A user may read and update their own record (the principal's id is the user's id).
COMMAND_RULES = {
    CreateUser: RequirePermissions("user:create"),
    BatchCreateUsers: RequirePermissions("user:create"),
    UpdateUser: RequirePermissions("user:update", resource_field="user_id", allow_owner=True),
    DeleteUser: RequirePermissions("user:delete"),
}
QUERY_RULES = {
    GetUser: RequirePermissions("user:read", resource_field="user_id", allow_owner=True),
    FindUsers: RequirePermissions("user:list"),
    GetUserStats: RequirePermissions("user:stats"),
}
# The stats bus takes one internal command, from the projection acting as itself (projection.PROJECTION).
STATS_RULES = {
    ApplyUserStatsChange: RequirePermissions("user_stats:write", allow_admin_override=False),
}


def _this_user(query: GetUser) -> Iterable[tuple[str, object]]:
    return [(handlers.USER, query.user_id)]


def _every_user(query: object) -> Iterable[tuple[str, object]]:
    return [(handlers.USER, "*")]


# What is cached, for how long, and which commands' affected entities drop it.
CACHE_POLICIES = {
    GetUser: CachePolicy(ttl=300, tags=_this_user),
    FindUsers: CachePolicy(ttl=60, tags=_every_user),
    # Not tagged with users: the stats change when the projection has run, which the commands cannot
    # know; the projection's own command invalidates this tag once the read model has moved.
    GetUserStats: CachePolicy(ttl=60, tags=projection.stats_tags),
}


class Container(containers.DeclarativeContainer):
    """Builds the service: settings, database, cache, hasher, repositories, buses, events and worker."""

    settings = providers.Singleton(Settings.from_environment)

    database = providers.Singleton(
        Database,
        url=settings.provided.database_url,
        engine_options=settings.provided.engine_options.call(),
        sqlite_busy_timeout=settings.provided.sqlite_busy_timeout,
    )
    cache = providers.Singleton(
        cache_from_url, settings.provided.redis_url, namespace=settings.provided.cache_namespace
    )
    hasher = providers.Singleton(PasswordHasher, cost=settings.provided.scrypt_cost)
    audit_sink = providers.Singleton(StructlogAuditSink)

    users = providers.Factory(UserRepository, database=database)
    user_reads = providers.Factory(UserReadRepository, database=database)
    user_stats = providers.Factory(UserStatsRepository, database=database)

    # The read model's side: the projection sends ApplyUserStatsChange here. CacheInvalidation sits
    # outside Transaction, so it drops GetUserStats's entries after the outermost commit: this bus's
    # own transaction (embedded), or the worker consumer's (scaled out), which this one joins.
    stats_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                ApplyUserStatsChange: providers.Factory(
                    projection.ApplyUserStatsChangeHandler, stats=user_stats
                ),
            }
        ),
        behaviours=providers.List(
            providers.Singleton(Logging),
            providers.Singleton(Authorization, rules=STATS_RULES),
            providers.Singleton(CacheInvalidation, cache=cache),
            providers.Singleton(Retry),
            providers.Singleton(Transaction, database=database),
        ),
    )
    stats_projection = providers.Factory(projection.UserStatsProjection, stats_bus=stats_bus)
    event_bus = providers.Singleton(
        EventBus,
        handlers=providers.Dict(
            {
                # Named: the name is what the worker's inbox remembers, so it must stay stable.
                UserCreated: providers.Dict(user_stats=stats_projection),
                UserUpdated: providers.Dict(user_stats=stats_projection),
                UserDeleted: providers.Dict(user_stats=stats_projection),
            }
        ),
        behaviours=providers.List(providers.Singleton(Logging)),
    )

    # What handlers publish through, chosen by the settings: in-process after commit (embedded), or
    # an outbox row in the command's transaction (with a broker). It is also a command-bus behaviour,
    # inside Retry and Transaction, so that it sees which attempt committed and the command's context.
    events = providers.Selector(
        settings.provided.event_delivery,
        in_process=providers.Singleton(InProcessPublisher, event_bus=event_bus),
        outbox=providers.Singleton(
            OutboxPublisher, database=database, schema=settings.provided.events_schema
        ),
    )

    # The worker's side (only with a broker): the relay moves outbox rows to the broker the URL names
    # (RabbitMQ or NATS JetStream); the consumer feeds the event bus, each subscriber in a transaction
    # of its own with its inbox row.
    transport = providers.Selector(
        settings.provided.broker,
        rabbitmq=providers.Singleton(
            RabbitMQTransport, url=settings.provided.broker_url, exchange=settings.provided.broker_name
        ),
        nats=providers.Singleton(
            NatsTransport, url=settings.provided.broker_url, stream=settings.provided.broker_name
        ),
    )
    relay = providers.Singleton(
        OutboxRelay, database=database, transport=transport, schema=settings.provided.events_schema
    )
    consumer = providers.Singleton(
        Consumer,
        transport=transport,
        bus=event_bus,
        database=database,
        types=providers.Object(EVENT_TYPES),
        queue=settings.provided.stats_queue,
        schema=settings.provided.events_schema,
    )

    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                CreateUser: providers.Factory(
                    handlers.CreateUserHandler, users=users, hasher=hasher, events=events
                ),
                UpdateUser: providers.Factory(handlers.UpdateUserHandler, users=users, events=events),
                DeleteUser: providers.Factory(handlers.DeleteUserHandler, users=users, events=events),
                BatchCreateUsers: providers.Factory(
                    handlers.BatchCreateUsersHandler, users=users, hasher=hasher, events=events
                ),
            }
        ),
        behaviours=providers.List(
            providers.Singleton(Logging),
            providers.Singleton(Audit, sink=audit_sink),
            providers.Singleton(Timeout, default=settings.provided.command_timeout),
            providers.Singleton(Authorization, rules=COMMAND_RULES),
            providers.Singleton(Validation),
            providers.Singleton(CacheInvalidation, cache=cache),
            providers.Singleton(Retry),
            providers.Singleton(Transaction, database=database),
            events,
        ),
    )

    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict(
            {
                GetUser: providers.Factory(handlers.GetUserHandler, users=user_reads),
                FindUsers: providers.Factory(handlers.FindUsersHandler, users=user_reads),
                GetUserStats: providers.Factory(handlers.GetUserStatsHandler, users=user_reads),
            }
        ),
        behaviours=providers.List(
            providers.Singleton(Logging),
            providers.Singleton(Timeout, default=settings.provided.query_timeout),
            providers.Singleton(Authorization, rules=QUERY_RULES),
            providers.Singleton(Validation),
            providers.Singleton(QueryCache, cache=cache, policies=CACHE_POLICIES),
            # Reads are safe to run again: a connection lost under a query (the database restarted,
            # a pooled connection was killed) is retried on a fresh one before the caller sees a 503.
            providers.Singleton(Retry, default=READ_RETRY),
        ),
    )
