"""A small user directory the caching tests share: DTOs, queries, commands, handlers, a container."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import attrs
from dependency_injector import containers, providers

from cqrskit import AffectedEntity, Command, CommandBus, Context, NotFoundError, Page, Query, QueryBus, Result
from cqrskit.caching import CacheInvalidation, CachePolicy, QueryCache, cache_from_url
from cqrskit.testing import InMemoryCache


@attrs.frozen
class UserDto:
    id: str
    name: str
    email: str


@attrs.frozen
class GetUser(Query[UserDto]):
    user_id: str
    trace: str = ""  # not part of the key: vary_by names user_id only


@attrs.frozen
class ListUsers(Query[Page[UserDto]]):
    page: int = 1
    page_size: int = 10


@attrs.frozen
class FindUserByEmail(Query[UserDto | None]):
    email: str


@attrs.frozen
class SearchUsers(Query[tuple[UserDto, ...]]):
    """A query whose key must not depend on set order, dict order or the hash seed."""

    roles: frozenset[str]
    filters: dict[str, str]
    since: datetime | None = None


@attrs.frozen
class RenameUser(Command[None]):
    user_id: str
    name: str


@attrs.frozen
class RenameEveryone(Command[None]):
    suffix: str


class UserStore:
    """The users, and how many times each query type read them."""

    def __init__(self) -> None:
        self.users: dict[str, UserDto] = {
            "42": UserDto("42", "Ada", "ada@example.com"),
            "7": UserDto("7", "Grace", "grace@example.com"),
        }
        self.reads: Counter[str] = Counter()


class GetUserHandler:
    def __init__(self, store: UserStore) -> None:
        self.store = store

    async def handle(self, query: GetUser, context: Context) -> UserDto:
        self.store.reads["GetUser"] += 1
        try:
            return self.store.users[query.user_id]
        except KeyError:
            raise NotFoundError(f"no user {query.user_id}") from None


class ListUsersHandler:
    def __init__(self, store: UserStore) -> None:
        self.store = store

    async def handle(self, query: ListUsers, context: Context) -> Page[UserDto]:
        self.store.reads["ListUsers"] += 1
        users = sorted(self.store.users.values(), key=lambda u: u.id)
        start = (query.page - 1) * query.page_size
        return Page(users[start : start + query.page_size], len(users), query.page, query.page_size)


class FindUserByEmailHandler:
    def __init__(self, store: UserStore) -> None:
        self.store = store

    async def handle(self, query: FindUserByEmail, context: Context) -> UserDto | None:
        self.store.reads["FindUserByEmail"] += 1
        return next((u for u in self.store.users.values() if u.email == query.email), None)


class RenameUserHandler:
    def __init__(self, store: UserStore) -> None:
        self.store = store

    async def handle(self, command: RenameUser, context: Context) -> Result[None]:
        user = self.store.users.get(command.user_id)
        if user is None:
            raise NotFoundError(f"no user {command.user_id}")
        self.store.users[user.id] = attrs.evolve(user, name=command.name)
        return Result.success(None, affected_entities=[AffectedEntity("user", user.id, "updated", ("name",))])


class RenameEveryoneHandler:
    def __init__(self, store: UserStore) -> None:
        self.store = store

    async def handle(self, command: RenameEveryone, context: Context) -> Result[None]:
        for user in list(self.store.users.values()):
            self.store.users[user.id] = attrs.evolve(user, name=user.name + command.suffix)
        return Result.success(None, affected_entities=[AffectedEntity("user", "*", "updated", ("name",))])


def user_tags(query: GetUser) -> list[tuple[str, str]]:
    return [("user", query.user_id)]


POLICIES = {
    GetUser: CachePolicy(ttl=300, vary_by=("user_id",), tags=user_tags),
    ListUsers: CachePolicy(ttl=300, tags=lambda q: [("user", "*")]),
    FindUserByEmail: CachePolicy(ttl=300, cache_null_results=True),
}


class Container(containers.DeclarativeContainer):
    """Memory cache by default; Redis when ``cache_url`` is configured."""

    config = providers.Configuration()
    store = providers.Singleton(UserStore)
    cache = providers.Singleton(
        cache_from_url,
        config.cache_url,
        namespace=config.cache_namespace,
        local_ttl=config.cache_local_ttl,
    )
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict(
            {
                GetUser: providers.Factory(GetUserHandler, store=store),
                ListUsers: providers.Factory(ListUsersHandler, store=store),
                FindUserByEmail: providers.Factory(FindUserByEmailHandler, store=store),
            }
        ),
        behaviours=providers.List(
            providers.Singleton(QueryCache, cache=cache, policies=providers.Object(POLICIES))
        ),
    )
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                RenameUser: providers.Factory(RenameUserHandler, store=store),
                RenameEveryone: providers.Factory(RenameEveryoneHandler, store=store),
            }
        ),
        behaviours=providers.List(providers.Singleton(CacheInvalidation, cache=cache)),
    )


SEARCH = SearchUsers(
    frozenset({"admin", "editor", "viewer", "owner"}),
    {"zone": "eu", "active": "yes", "team": "core"},
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)


def search_key(query: SearchUsers) -> str:
    """The key QueryCache stores `query` under (the key tests compare across processes)."""
    return QueryCache(InMemoryCache(), {SearchUsers: CachePolicy(ttl=1)}).key_for(query)
