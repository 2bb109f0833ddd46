"""Cache backends for `QueryCache` and `CacheInvalidation`: the aiocache adapter and the two levels.

- `AiocacheBackend` adapts an aiocache cache (memory or Redis) to the `CacheBackend` port.
- `TwoLevelCache` puts a short-lived in-process level in front of a shared backend.
- `memory_cache`, `redis_cache` and `cache_from_url` build them, for the container: memory when no URL
  is configured, Redis when one is.

aiocache is imported only when you build one of its caches (extra ``cache`` or ``redis``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from cqrskit.errors import ConfigurationError
from cqrskit.protocols import CacheBackend

__all__ = [
    "AiocacheBackend",
    "TwoLevelCache",
    "as_backend",
    "cache_from_url",
    "memory_cache",
    "redis_cache",
]

_BACKEND_METHODS = ("get", "multi_get", "set", "add", "delete", "increment", "close")


def _is_aiocache(cache: object) -> bool:
    return any(cls.__module__.startswith("aiocache.") for cls in type(cache).__mro__)


def _is_aiocache_memory(cache: object) -> bool:
    return any(cls.__name__ == "SimpleMemoryBackend" for cls in type(cache).__mro__)


class AiocacheBackend:
    """Adapts an aiocache cache (``Cache(Cache.MEMORY)``, ``RedisCache(...)``) to `CacheBackend`.

    How it meets aiocache 0.12.3's quirks:

    - Every call passes ``timeout=None``, so aiocache never wraps it in ``asyncio.wait_for`` (a Task
      per call). Give `timeout` instead: it bounds each call with ``asyncio.timeout``, which costs no
      Task. `as_backend` carries over the timeout the cache was built with (none for memory).
    - Time to live is always passed as a float, so aiocache's Redis backend sends PSETEX rather than
      the SETEX redis-py deprecates.
    - `close` calls redis-py's ``aclose()`` on a Redis cache's client, because aiocache's own
      ``close()`` calls the deprecated ``close()``.

    A Redis cache must keep aiocache's default JSON serializer, so that other processes can read what
    this one writes and tag counters stay integers.
    """

    __slots__ = ("_cache", "_timeout")

    def __init__(self, cache: Any, *, timeout: float | None = None) -> None:
        self._cache = cache
        self._timeout = timeout

    @property
    def cache(self) -> Any:
        """The aiocache cache this adapter wraps."""
        return self._cache

    async def get(self, key: str) -> Any:
        """Return the value under `key`, or None."""
        if self._timeout is None:
            return await self._cache.get(key, timeout=None)
        async with asyncio.timeout(self._timeout):
            return await self._cache.get(key, timeout=None)

    async def multi_get(self, keys: Sequence[str]) -> Sequence[Any]:
        """Return the values of `keys` in one call (MGET on Redis)."""
        if self._timeout is None:
            return await self._cache.multi_get(keys, timeout=None)  # type: ignore[no-any-return]
        async with asyncio.timeout(self._timeout):
            return await self._cache.multi_get(keys, timeout=None)  # type: ignore[no-any-return]

    async def set(self, key: str, value: Any, ttl: float | None) -> None:
        """Store `value` under `key` for `ttl` seconds."""
        # A float ttl makes aiocache's Redis backend use PSETEX instead of the deprecated SETEX.
        seconds = None if ttl is None else float(ttl)
        async with asyncio.timeout(self._timeout):
            await self._cache.set(key, value, ttl=seconds, timeout=None)

    async def add(self, key: str, value: Any, ttl: float | None) -> bool:
        """Store `value` only when `key` is missing (SET NX on Redis)."""
        seconds = None if ttl is None else float(ttl)
        try:
            async with asyncio.timeout(self._timeout):
                await self._cache.add(key, value, ttl=seconds, timeout=None)
        except ValueError:  # aiocache's way of saying the key exists
            return False
        return True

    async def delete(self, key: str) -> None:
        """Remove `key`."""
        async with asyncio.timeout(self._timeout):
            await self._cache.delete(key, timeout=None)

    async def increment(self, key: str, delta: int, ttl: float | None) -> int:
        """Add `delta` to the counter under `key` (INCRBY on Redis) and reset its time to live."""
        async with asyncio.timeout(self._timeout):
            value = await self._cache.increment(key, delta, timeout=None)
            if ttl is not None:
                await self._cache.expire(key, math.ceil(ttl), timeout=None)
        return int(value)

    async def close(self) -> None:
        """Close the cache's connections."""
        aclose = getattr(getattr(self._cache, "client", None), "aclose", None)
        if aclose is not None:
            await aclose()  # aiocache's close() would call redis-py's deprecated close()
        else:
            await self._cache.close(timeout=None)

    def __repr__(self) -> str:
        return f"AiocacheBackend({self._cache!r}, timeout={self._timeout!r})"


def as_backend(cache: object) -> CacheBackend:
    """Return `cache` as a `CacheBackend`: an aiocache cache is wrapped in `AiocacheBackend`.

    `QueryCache` and `CacheInvalidation` call it on what you give them.
    """
    if _is_aiocache(cache):
        timeout = None if _is_aiocache_memory(cache) else getattr(cache, "timeout", None) or None
        return AiocacheBackend(cache, timeout=timeout)
    if all(callable(getattr(cache, name, None)) for name in _BACKEND_METHODS):
        return cache  # type: ignore[return-value]  # checked structurally above
    raise ConfigurationError(
        f"{cache!r} is not a cache: give an aiocache cache (aiocache.Cache(aiocache.Cache.MEMORY), "
        f"aiocache.RedisCache(...)) or an object with the CacheBackend methods {list(_BACKEND_METHODS)}"
    )


_MISSING: Any = object()


class TwoLevelCache:
    """A short-lived in-process level in front of a shared backend (Redis), for the hottest keys.

    Reads are answered from this process's memory when it holds the key, else from `shared`, whose
    answer is kept here for at most `local_ttl` seconds. Writes and tag increments go to `shared` and
    update the local copy, so this process sees its own invalidations at once; another process's
    invalidation reaches this one within `local_ttl` seconds, the staleness bound of this level. At
    most `max_entries` keys are kept; the oldest go first.
    """

    __slots__ = ("_clock", "_entries", "_local_ttl", "_max_entries", "_shared")

    def __init__(
        self,
        shared: object,
        *,
        local_ttl: float = 1.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if local_ttl <= 0:
            raise ConfigurationError(f"local_ttl must be positive, got {local_ttl!r}")
        if max_entries < 1:
            raise ConfigurationError(f"max_entries must be positive, got {max_entries!r}")
        self._shared = as_backend(shared)
        self._local_ttl = local_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, Any]] = {}

    @property
    def shared(self) -> CacheBackend:
        """The backend every process shares."""
        return self._shared

    @property
    def local_ttl(self) -> float:
        """How long, in seconds, this process keeps a value it read: the staleness bound."""
        return self._local_ttl

    def _local(self, key: str, now: float) -> Any:
        found = self._entries.get(key)
        if found is None:
            return _MISSING
        if found[0] <= now:
            del self._entries[key]
            return _MISSING
        return found[1]

    def _keep(self, key: str, value: Any, ttl: float | None = None) -> None:
        entries = self._entries
        entries.pop(key, None)
        if len(entries) >= self._max_entries:
            del entries[next(iter(entries))]
        lifetime = self._local_ttl if ttl is None else min(ttl, self._local_ttl)
        entries[key] = (self._clock() + lifetime, value)

    async def get(self, key: str) -> Any:
        """Return the value under `key`, from this process when it holds a fresh copy."""
        value = self._local(key, self._clock())
        if value is _MISSING:
            value = await self._shared.get(key)
            if value is not None:
                self._keep(key, value)
        return value

    async def multi_get(self, keys: Sequence[str]) -> Sequence[Any]:
        """Return the values of `keys`; those this process lacks come from `shared` in one call."""
        now = self._clock()
        values = [self._local(key, now) for key in keys]
        absent = [position for position, value in enumerate(values) if value is _MISSING]
        if absent:
            fetched = await self._shared.multi_get([keys[position] for position in absent])
            for position, value in zip(absent, fetched, strict=True):
                values[position] = value
                if value is not None:
                    self._keep(keys[position], value)
        return values

    async def set(self, key: str, value: Any, ttl: float | None) -> None:
        """Store `value` in `shared` and keep it here."""
        await self._shared.set(key, value, ttl)
        self._keep(key, value, ttl)

    async def add(self, key: str, value: Any, ttl: float | None) -> bool:
        """Store `value` in `shared` when missing there; keep it here when it was stored."""
        stored = await self._shared.add(key, value, ttl)
        if stored:
            self._keep(key, value, ttl)
        else:
            self._entries.pop(key, None)
        return stored

    async def delete(self, key: str) -> None:
        """Remove `key` from `shared` and from here."""
        self._entries.pop(key, None)
        await self._shared.delete(key)

    async def increment(self, key: str, delta: int, ttl: float | None) -> int:
        """Increment the counter in `shared` and keep its new value here."""
        value = await self._shared.increment(key, delta, ttl)
        self._keep(key, value)
        return value

    async def close(self) -> None:
        """Forget the local level and close `shared`."""
        self._entries.clear()
        await self._shared.close()

    def __repr__(self) -> str:
        return f"TwoLevelCache({self._shared!r}, local_ttl={self._local_ttl!r})"


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
