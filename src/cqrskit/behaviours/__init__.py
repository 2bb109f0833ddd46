"""Behaviours: the cross-cutting steps a bus runs around its handlers, configured in the container."""

from cqrskit.behaviours.cache_invalidation import CacheInvalidation
from cqrskit.behaviours.query_cache import CachePolicy, QueryCache

__all__ = [
    "CacheInvalidation",
    "CachePolicy",
    "QueryCache",
]
