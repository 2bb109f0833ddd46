"""Containers with the common mistakes `check` must catch by itself (no ``--modules``).

Loaded by name in tests/test_inspect.py: ``tests.inspect_mistakes:SoundContainer`` and the others. The
messages live in this module, next to their containers, as a user's would next to theirs.
"""

from __future__ import annotations

from uuid import UUID

import attrs
from dependency_injector import containers, providers

from cqrskit import AffectedEntity, Command, CommandBus, Context, Query, QueryBus, Result
from cqrskit.behaviours import Authenticated, Authorization, Timeout
from cqrskit.caching import CacheInvalidation, CachePolicy, QueryCache
from cqrskit.testing import InMemoryCache


@attrs.frozen
class RenameUser(Command[None]):
    user_id: UUID
    name: str


@attrs.frozen
class GetName(Query[str]):
    user_id: UUID


class RenameReporting:
    """Reports what it changed: CacheInvalidation can drop the cached names."""

    async def handle(self, command: RenameUser, context: Context) -> Result[None]:
        return Result.success(
            None, affected_entities=[AffectedEntity("user", str(command.user_id), "updated")]
        )


class RenameSilently:
    """Returns a plain value: the cached names stay stale after it."""

    async def handle(self, command: RenameUser, context: Context) -> None:
        return None


class GetNameHandler:
    async def handle(self, query: GetName, context: Context) -> str:
        return "ada"


RULES = {RenameUser: Authenticated(), GetName: Authenticated()}
POLICIES = {GetName: CachePolicy(ttl=60, tags=lambda query: [("user", query.user_id)])}


class SoundContainer(containers.DeclarativeContainer):
    cache = providers.Singleton(InMemoryCache)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict({RenameUser: providers.Factory(RenameReporting)}),
        behaviours=providers.List(
            providers.Singleton(Authorization, rules=RULES),
            providers.Singleton(CacheInvalidation, cache=cache),
        ),
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict({GetName: providers.Factory(GetNameHandler)}),
        behaviours=providers.List(
            providers.Singleton(Authorization, rules=RULES),
            providers.Singleton(QueryCache, cache=cache, policies=POLICIES),
        ),
    )


class SilentCommandContainer(containers.DeclarativeContainer):
    """RenameUser's handler cannot report affected entities, on a bus with CacheInvalidation."""

    cache = providers.Singleton(InMemoryCache)
    command_bus = providers.Singleton(
        CommandBus,
        # The per-dispatch form: the inspector still finds the handler class behind the provider.
        handlers=providers.Dict({RenameUser: providers.Factory(RenameSilently).provider}),
        behaviours=providers.List(
            providers.Singleton(Authorization, rules=RULES),
            providers.Singleton(CacheInvalidation, cache=cache),
        ),
    )
    query_bus = SoundContainer.query_bus


class UnroutedCommandContainer(containers.DeclarativeContainer):
    """Only the query bus: RenameUser has a rule, a timeout and no route."""

    cache = providers.Singleton(InMemoryCache)
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict({GetName: providers.Factory(GetNameHandler)}),
        behaviours=providers.List(
            providers.Singleton(Timeout, per_message={RenameUser: 2.0}),
            providers.Singleton(Authorization, rules=RULES),
            providers.Singleton(QueryCache, cache=cache, policies=POLICIES),
        ),
    )
