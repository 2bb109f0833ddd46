"""Type checks for the caching API: run by mypy --strict and pyright, never executed."""

from __future__ import annotations

from typing import assert_type

import attrs

from cqrskit import CacheInfo, Query, QueryBus, Result
from cqrskit.caching import (
    AiocacheBackend,
    CacheBackend,
    CacheInvalidation,
    CachePolicy,
    QueryCache,
    TwoLevelCache,
    cache_from_url,
    memory_cache,
    redis_cache,
)
from cqrskit.testing import FailingCache, InMemoryCache


@attrs.frozen
class UserDto:
    id: str


@attrs.frozen
class GetUser(Query[UserDto]):
    user_id: str


def user_tags(query: GetUser) -> list[tuple[str, str]]:
    return [("user", query.user_id)]


policy: CachePolicy[GetUser] = CachePolicy(ttl=60, vary_by=("user_id",), tags=user_tags)
by_query: CachePolicy[GetUser] = CachePolicy(ttl=lambda q: 5.0, key=lambda q: q.user_id)

memory: CacheBackend = memory_cache()
redis: CacheBackend = redis_cache("redis://127.0.0.1:6379/0", namespace="app")
two_levels: CacheBackend = TwoLevelCache(redis, local_ttl=1.0)
configured: CacheBackend = cache_from_url(None)
fake: CacheBackend = InMemoryCache()
down: CacheBackend = FailingCache()
adapter: AiocacheBackend = memory_cache()

query_cache = QueryCache(memory, {GetUser: policy})
invalidation = CacheInvalidation(memory)
assert_type(query_cache.key_for(GetUser("42")), str)


async def read(bus: QueryBus) -> None:
    result = await bus.execute(GetUser("42"))
    assert_type(result, Result[UserDto])
    assert_type(result.cache_info, CacheInfo | None)


def author_tags(query: GetUser, user: UserDto) -> list[tuple[str, str]]:
    return [("author", user.id)]


with_results: CachePolicy[GetUser] = CachePolicy(ttl=60, result_tags=author_tags)
