"""The composition root: every handler, every behaviour and every setting of the service, in one place.

``python -m cqrskit routes examples.users.container:Container`` prints what this declares.
"""

from __future__ import annotations

from collections.abc import Iterable

from dependency_injector import containers, providers

from cqrskit import CommandBus, QueryBus
from cqrskit.behaviours import (
    Audit,
    Authorization,
    CacheInvalidation,
    CachePolicy,
    Logging,
    QueryCache,
    RequirePermissions,
    Retry,
    StructlogAuditSink,
    Timeout,
    Transaction,
    Validation,
)
from cqrskit.caching import cache_from_url
from cqrskit.sqlalchemy import Database
from examples.users import handlers
from examples.users.messages import (
    BatchCreateUsers,
    CreateUser,
    DeleteUser,
    FindUsers,
    GetUser,
    GetUserStats,
    UpdateUser,
)
from examples.users.passwords import PasswordHasher
from examples.users.repositories import UserReadRepository, UserRepository
from examples.users.settings import Settings

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


def _this_user(query: GetUser) -> Iterable[tuple[str, object]]:
    return [(handlers.USER, query.user_id)]


def _every_user(query: object) -> Iterable[tuple[str, object]]:
    return [(handlers.USER, "*")]


# What is cached, for how long, and which commands' affected entities drop it.
CACHE_POLICIES = {
    GetUser: CachePolicy(ttl=300, tags=_this_user),
    FindUsers: CachePolicy(ttl=60, tags=_every_user),
    GetUserStats: CachePolicy(ttl=60, tags=_every_user),
}


class Container(containers.DeclarativeContainer):
    """Builds the service: settings, database, cache, password hasher, repositories and both buses."""

    settings = providers.Singleton(Settings.from_environment)

    database = providers.Singleton(
        Database, url=settings.provided.database_url, engine_options=settings.provided.engine_options.call()
    )
    cache = providers.Singleton(
        cache_from_url, settings.provided.redis_url, namespace=settings.provided.cache_namespace
    )
    hasher = providers.Singleton(PasswordHasher, cost=settings.provided.scrypt_cost)
    audit_sink = providers.Singleton(StructlogAuditSink)

    users = providers.Factory(UserRepository, database=database)
    user_reads = providers.Factory(UserReadRepository, database=database)

    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                CreateUser: providers.Factory(handlers.CreateUserHandler, users=users, hasher=hasher),
                UpdateUser: providers.Factory(handlers.UpdateUserHandler, users=users),
                DeleteUser: providers.Factory(handlers.DeleteUserHandler, users=users),
                BatchCreateUsers: providers.Factory(
                    handlers.BatchCreateUsersHandler, users=users, hasher=hasher
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
        ),
    )
