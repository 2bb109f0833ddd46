"""Caching query results and invalidating them when commands change what they read.

- `QueryCache` (with one `CachePolicy` per query type) answers queries from a cache; `CacheInvalidation`
  drops the entries a committed command affected, in every process sharing the cache; with an
  `InvalidationJournal` none is dropped when the cache cannot be reached.
- `CacheBackend` is the port both talk to. `AiocacheBackend` adapts an aiocache cache (memory or Redis)
  to it, and `TwoLevelCache` puts a short-lived in-process level in front of a shared backend.
- `memory_cache`, `redis_cache` and `cache_from_url` build them, for the container: memory when no URL
  is configured, Redis when one is.

aiocache is imported only when you build one of its caches (extra ``cache`` or ``redis``).
"""

from cqrskit.caching._aiocache import AiocacheBackend, as_backend
from cqrskit.caching._factories import cache_from_url, memory_cache, redis_cache
from cqrskit.caching._invalidation import CacheInvalidation
from cqrskit.caching._journal import InvalidationJournal
from cqrskit.caching._policy import CachePolicy
from cqrskit.caching._port import CacheBackend
from cqrskit.caching._query_cache import QueryCache
from cqrskit.caching._two_level import TwoLevelCache

__all__ = [
    "AiocacheBackend",
    "CacheBackend",
    "CacheInvalidation",
    "CachePolicy",
    "InvalidationJournal",
    "QueryCache",
    "TwoLevelCache",
    "as_backend",
    "cache_from_url",
    "memory_cache",
    "redis_cache",
]
