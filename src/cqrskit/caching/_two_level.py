"""`TwoLevelCache`: a short-lived in-process level in front of a shared backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from cqrskit._errors import ConfigurationError
from cqrskit.caching._aiocache import as_backend
from cqrskit.caching._port import CacheBackend

__all__ = ["TwoLevelCache"]

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
