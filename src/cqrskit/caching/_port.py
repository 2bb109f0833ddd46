"""The cache port: what `QueryCache` and `CacheInvalidation` need of a cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["CacheBackend"]


class CacheBackend(Protocol):
    """The cache port `QueryCache` and `CacheInvalidation` talk to; `cqrskit.caching` implements it.

    Values are JSON-compatible data (what cattrs unstructures to); a backend shared by several
    processes stores them as JSON. A missing key reads as None. Pass an aiocache cache instead and it
    is wrapped in `cqrskit.caching.AiocacheBackend` for you. A backend over a network bounds each
    call with a timeout of its own and raises when it runs out: the behaviours fail open on an
    exception, but wait as long as a call takes.
    """

    async def get(self, key: str, /) -> Any:
        """Return the value stored under `key`, or None."""
        ...

    async def multi_get(self, keys: Sequence[str], /) -> Sequence[Any]:
        """Return the values of `keys`, in order, None for each missing one, in one round trip."""
        ...

    async def set(self, key: str, value: Any, ttl: float | None, /) -> None:
        """Store `value` under `key` for `ttl` seconds (forever when None)."""
        ...

    async def add(self, key: str, value: Any, ttl: float | None, /) -> bool:
        """Store `value` only when `key` is missing; return whether it was stored."""
        ...

    async def delete(self, key: str, /) -> None:
        """Remove `key`; a missing key is not an error."""
        ...

    async def increment(self, key: str, delta: int, ttl: float | None, /) -> int:
        """Add `delta` to the integer under `key` and return the new value.

        A missing key counts as 0; the key's time to live is reset to `ttl` seconds. On a shared
        backend the increment is atomic across processes.
        """
        ...

    async def close(self) -> None:
        """Release connections; the application calls it once, at shutdown."""
        ...
