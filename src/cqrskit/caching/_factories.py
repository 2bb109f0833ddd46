"""Building the cache a container configures: memory, Redis, or Redis with an in-process level.

- `AiocacheBackend` adapts an aiocache cache (memory or Redis) to the `CacheBackend` port.
- `TwoLevelCache` puts a short-lived in-process level in front of a shared backend.
- `memory_cache`, `redis_cache` and `cache_from_url` build them, for the container: memory when no URL
  is configured, Redis when one is.

aiocache is imported only when you build one of its caches (extra ``cache`` or ``redis``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from cqrskit._errors import ConfigurationError
from cqrskit.caching._aiocache import AiocacheBackend
from cqrskit.caching._port import CacheBackend
from cqrskit.caching._two_level import TwoLevelCache

__all__ = ["cache_from_url", "memory_cache", "redis_cache"]


def _import_aiocache() -> Any:
    try:
        import aiocache  # noqa: PLC0415 - an optional extra, needed only here
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            "caching on aiocache needs the 'cache' extra: pip install 'cqrskit[cache]'"
        ) from None
    return aiocache


def memory_cache(namespace: str | None = None) -> AiocacheBackend:
    """Return an in-process aiocache memory cache, the default backend; one per process."""
    aiocache = _import_aiocache()
    return AiocacheBackend(aiocache.SimpleMemoryCache(namespace=namespace, timeout=None))


def redis_cache(
    url: str = "redis://127.0.0.1:6379/0",
    *,
    namespace: str = "cqrskit",
    timeout: float | None = 0.5,
    max_connections: int | None = None,
) -> AiocacheBackend:
    """Return an aiocache Redis cache for `url` that several processes share (extra ``redis``).

    Every key is prefixed with ``namespace:``. `timeout` bounds each call, connecting included; when
    Redis is slow or down, cached queries are answered by their handlers instead (fail open).
    """
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"}:
        raise ConfigurationError(f"a Redis URL starts with redis:// or rediss://, got {url!r}")
    aiocache = _import_aiocache()
    pool_options: dict[str, Any] = {"socket_timeout": timeout}
    if parts.username:
        pool_options["username"] = unquote(parts.username)
    path = parts.path.strip("/")
    cache = aiocache.RedisCache(
        endpoint=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(path) if path else 0,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "rediss",
        namespace=namespace,
        timeout=None,  # no asyncio.wait_for per call: the adapter bounds calls itself
        pool_max_size=max_connections,
        create_connection_timeout=timeout,
        connection_pool_kwargs=pool_options,
    )
    return AiocacheBackend(cache, timeout=timeout)


def cache_from_url(
    url: str | None = None,
    *,
    namespace: str | None = None,
    local_ttl: float | None = None,
    timeout: float | None = 0.5,
) -> CacheBackend:
    """Return the cache a container configures: memory when `url` is empty, Redis when it is set.

    Keys are prefixed with `namespace` (``"cqrskit"`` when None). With Redis, `local_ttl` (seconds)
    adds an in-process level in front of it (`TwoLevelCache`); it is off unless given. Declare it
    once, as a singleton, and hand it to both `QueryCache` and `CacheInvalidation`::

        cache = providers.Singleton(cache_from_url, config.cache_url, local_ttl=config.cache_local_ttl)
    """
    namespace = namespace or "cqrskit"
    if not url or url.startswith("memory://"):
        return memory_cache(namespace=f"{namespace}:")
    shared = redis_cache(url, namespace=namespace, timeout=timeout)
    if local_ttl:
        return TwoLevelCache(shared, local_ttl=local_ttl)
    return shared
