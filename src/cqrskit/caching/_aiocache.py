"""`AiocacheBackend`: an aiocache cache behind the `CacheBackend` port, and `as_backend`."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from cqrskit._errors import ConfigurationError
from cqrskit.caching._port import CacheBackend

__all__ = ["AiocacheBackend", "as_backend"]

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
