"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from cqrskit.caching import CacheBackend, redis_cache
from tests import services


@pytest.fixture
async def caches(redis_url: str, unique_name: str) -> AsyncIterator[Callable[[], CacheBackend]]:
    """Makes Redis caches under this test's own namespace; deletes its keys afterwards, also on failure."""
    made: list[CacheBackend] = []

    def make() -> CacheBackend:
        cache = redis_cache(redis_url, namespace=unique_name)
        made.append(cache)
        return cache

    try:
        yield make
    finally:
        for cache in made:
            await cache.close()
        await services.drop_redis_keys(redis_url, f"{unique_name}:")
