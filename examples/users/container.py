"""The composition root: every handler, every behaviour and every setting of the service, in one place.

``python -m cqrskit routes examples.users.container:Container`` prints what this declares. The API
processes use ``command_bus``, ``query_bus`` and ``readiness`` (and, without a broker, ``consumer`` on
the ``local_transport``, and ``invalidation``); the worker (``python -m cqrskit worker
examples.users.container:Container``, only with a broker) uses ``relay`` and ``consumer``; both build
``event_bus`` and ``stats_bus`` from here.
"""

from __future__ import annotations

from collections.abc import Iterable

from dependency_injector import containers, providers

from cqrskit import CommandBus, QueryBus
from cqrskit.behaviours import (
    Audit,
    Authorization,
    Logging,
    Metrics,
    RequirePermissions,
    Retry,
    RetryPolicy,
    StructlogAuditSink,
    Timeout,
    Tracing,
    Validation,
)
from cqrskit.caching import CacheInvalidation, CachePolicy, QueryCache, cache_from_url
from cqrskit.events import (
    Consumer,
    EventBus,
    EventMetrics,
    LocalTransport,
    NatsTransport,
    OutboxPublisher,
    OutboxRelay,
    RabbitMQTransport,
)
from cqrskit.health import Readiness, cache_check, database_check
from cqrskit.routing import Route, Routes
from cqrskit.sqlalchemy import Database, SqlInvalidationJournal, Transaction
from examples.users import handlers, projection
from examples.users.events import EVENT_TYPES, UserCreated, UserDeleted, UserUpdated
from examples.users.messages import (
    ApplyUserStatsChange,
    BatchCreateUsers,
    CreateUser,
    DeleteUser,
    ExportUsers,
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

# The stats bus takes one internal command, from the projection acting as itself (projection.PROJECTION).
STATS_RULES = {
    ApplyUserStatsChange: RequirePermissions("user_stats:write", allow_admin_override=False),
}


def _this_user(query: GetUser) -> Iterable[tuple[str, object]]:
    return [(handlers.USER, query.user_id)]


def _every_user(query: object) -> Iterable[tuple[str, object]]:
    return [(handlers.USER, "*")]


# Not tagged with users: the stats change when the projection has run, which the commands cannot know;
# the projection's own command invalidates this tag once the read model has moved.
STATS_POLICY = CachePolicy(ttl=60, tags=projection.stats_tags)


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
    # Spans go nowhere unless OTEL_* settings name an exporter (examples/users/telemetry.py); the
    # metrics are prometheus-client's, served at /metrics (and by the worker with --metrics).
    tracing = providers.Singleton(Tracing)
    metrics = providers.Singleton(Metrics)
    event_metrics = providers.Singleton(EventMetrics)
    # What /readyz checks in the API processes: what they cannot serve without. The broker, the relay's
    # lag and the consumer are the worker's to report (python -m cqrskit worker --health-port).
    readiness = providers.Singleton(
        Readiness,
        checks=providers.Dict(
            database=providers.Callable(database_check, database),
            cache=providers.Callable(cache_check, cache),
        ),
    )
    audit_sink = providers.Singleton(StructlogAuditSink)

    users = providers.Factory(UserRepository, database=database)
    user_reads = providers.Factory(UserReadRepository, database=database)
    user_stats = providers.Factory(UserStatsRepository, database=database)

    # Cache invalidations are recorded in the command's transaction and applied right after COMMIT; when
    # the cache cannot be reached, `invalidation.run()` (a task of every API process and of the worker)
    # applies them once it can. It sits inside Transaction for that.
    journal = providers.Singleton(
        SqlInvalidationJournal, database=database, schema=settings.provided.events_schema
    )
    invalidation = providers.Singleton(CacheInvalidation, cache=cache, journal=journal)

    # The read model's side: the projection sends ApplyUserStatsChange here, inside the consumer's
    # transaction (with its inbox row), which this bus's Transaction joins. CacheInvalidation drops
    # GetUserStats's entries after that outermost commit.
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
            providers.Singleton(Retry),
            providers.Singleton(Transaction, database=database),
            invalidation,
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
        behaviours=providers.List(tracing, providers.Singleton(Logging)),
    )

    # Events are outbox rows written in the command's transaction, either way. Embedded (no broker) the
    # outbox is the queue: each API process runs `consumer` on the LocalTransport, woken after each
    # commit that wrote events. With a broker the worker relays and consumes them. The publisher is also
    # a command-bus behaviour, inside Retry and Transaction, so that rows carry the command's context.
    local_transport = providers.Singleton(
        LocalTransport, database=database, schema=settings.provided.events_schema
    )
    events = providers.Selector(
        settings.provided.event_delivery,
        embedded=providers.Singleton(
            OutboxPublisher,
            database=database,
            schema=settings.provided.events_schema,
            wake=local_transport.provided.wake,
        ),
        outbox=providers.Singleton(
            OutboxPublisher, database=database, schema=settings.provided.events_schema
        ),
    )

    # The consumer feeds the event bus, each subscriber in a transaction of its own with its inbox row,
    # from the outbox itself (embedded: in every API process) or from the broker the URL names (RabbitMQ
    # or NATS JetStream: in the worker, whose relay moves the outbox rows there).
    transport = providers.Selector(
        settings.provided.event_transport,
        local=local_transport,
        rabbitmq=providers.Singleton(
            RabbitMQTransport, url=settings.provided.broker_url, exchange=settings.provided.broker_name
        ),
        nats=providers.Singleton(
            NatsTransport, url=settings.provided.broker_url, stream=settings.provided.broker_name
        ),
    )
    relay = providers.Singleton(
        OutboxRelay,
        database=database,
        transport=transport,
        schema=settings.provided.events_schema,
        observer=event_metrics,
    )
    consumer = providers.Singleton(
        Consumer,
        transport=transport,
        bus=event_bus,
        database=database,
        types=providers.Object(EVENT_TYPES),
        queue=settings.provided.stats_queue,
        schema=settings.provided.events_schema,
        observer=event_metrics,
    )

    # One declaration per message: its handler, who may send it, how it is cached. Admins pass every
    # rule (allow_admin_override); a user may read and update their own record (the principal's id is
    # the user's id). The buses and the behaviours' tables below are derived from these.
    commands = Routes(
        Route(
            CreateUser,
            handler=providers.Factory(handlers.CreateUserHandler, users=users, hasher=hasher, events=events),
            rule=RequirePermissions("user:create"),
        ),
        Route(
            UpdateUser,
            handler=providers.Factory(handlers.UpdateUserHandler, users=users, events=events),
            rule=RequirePermissions("user:update", resource_field="user_id", allow_owner=True),
        ),
        Route(
            DeleteUser,
            handler=providers.Factory(handlers.DeleteUserHandler, users=users, events=events),
            rule=RequirePermissions("user:delete"),
        ),
        Route(
            BatchCreateUsers,
            handler=providers.Factory(
                handlers.BatchCreateUsersHandler, users=users, hasher=hasher, events=events
            ),
            rule=RequirePermissions("user:create"),
        ),
    )
    queries = Routes(
        Route(
            GetUser,
            handler=providers.Factory(handlers.GetUserHandler, users=user_reads),
            rule=RequirePermissions("user:read", resource_field="user_id", allow_owner=True),
            cache=CachePolicy(ttl=300, tags=_this_user),
        ),
        Route(
            FindUsers,
            handler=providers.Factory(handlers.FindUsersHandler, users=user_reads),
            rule=RequirePermissions("user:list"),
            cache=CachePolicy(ttl=60, tags=_every_user),
        ),
        Route(
            GetUserStats,
            handler=providers.Factory(handlers.GetUserStatsHandler, users=user_reads),
            rule=RequirePermissions("user:stats"),
            cache=STATS_POLICY,
        ),
        # No demo account holds "user:export": only admins (allow_admin_override) may export.
        Route(
            ExportUsers,
            handler=providers.Factory(handlers.ExportUsersHandler, users=user_reads),
            rule=RequirePermissions("user:export"),
        ),
    )

    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(commands.handlers()),
        behaviours=providers.List(
            tracing,
            providers.Singleton(Logging),
            metrics,
            providers.Singleton(Audit, sink=audit_sink),
            providers.Singleton(
                Timeout, default=settings.provided.command_timeout, per_message=commands.timeouts()
            ),
            providers.Singleton(Authorization, rules=commands.rules()),
            providers.Singleton(Validation),
            providers.Singleton(Retry, per_message=commands.retry_policies()),
            providers.Singleton(Transaction, database=database, isolation=commands.isolation()),
            invalidation,
            events,
        ),
    )

    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict(queries.handlers()),
        behaviours=providers.List(
            tracing,
            providers.Singleton(Logging),
            metrics,
            # An export is bounded per row, not as a whole: it takes as long as the client reads.
            providers.Singleton(
                Timeout,
                default=settings.provided.query_timeout,
                per_message=providers.Dict({**queries.timeouts(), ExportUsers: None}),
                per_item=providers.Dict({ExportUsers: settings.provided.query_timeout}),
            ),
            providers.Singleton(Authorization, rules=queries.rules()),
            providers.Singleton(Validation),
            providers.Singleton(QueryCache, cache=cache, policies=queries.cache_policies()),
            # Reads are safe to run again: a connection lost under a query (the database restarted,
            # a pooled connection was killed) is retried on a fresh one before the caller sees a 503.
            providers.Singleton(Retry, default=READ_RETRY),
        ),
    )
