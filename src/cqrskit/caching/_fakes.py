"""Cache backends for tests: a dict with a clock you control, and a cache that is always down."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["FailingCache", "InMemoryCache"]


class InMemoryCache:
    """A `CacheBackend` in a dict, for tests: expiry follows `clock`, every call is recorded.

    Pass a clock you move yourself to test expiry without waiting::

        now = [0.0]
        cache = InMemoryCache(clock=lambda: now[0])
        ...
        now[0] += 301  # every entry with a ttl of 300 seconds has expired

    With ``json_round_trip=True`` values are stored as JSON text, as in Redis, so a test sees what
    another process would read. `calls` lists ``(operation, keys)`` for every call.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, json_round_trip: bool = False) -> None:
        self._clock = clock
        self._json = json_round_trip
        self._entries: dict[str, tuple[float | None, Any]] = {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def _read(self, key: str) -> Any:
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, stored = found
        if expires_at is not None and expires_at <= self._clock():
            del self._entries[key]
            return None
        return json.loads(stored) if self._json else stored

    def _write(self, key: str, value: Any, ttl: float | None) -> None:
        expires_at = None if ttl is None else self._clock() + ttl
        self._entries[key] = (expires_at, json.dumps(value) if self._json else value)

    @property
    def keys(self) -> list[str]:
        """The keys currently stored and not yet expired."""
        return [key for key in list(self._entries) if self._read(key) is not None]

    async def get(self, key: str) -> Any:
        """Return the value under `key`, or None."""
        self.calls.append(("get", (key,)))
        return self._read(key)

    async def multi_get(self, keys: Sequence[str]) -> Sequence[Any]:
        """Return the values of `keys`, None for the missing ones."""
        self.calls.append(("multi_get", tuple(keys)))
        return [self._read(key) for key in keys]

    async def set(self, key: str, value: Any, ttl: float | None) -> None:
        """Store `value` under `key` for `ttl` seconds of `clock`."""
        self.calls.append(("set", (key,)))
        self._write(key, value, ttl)

    async def add(self, key: str, value: Any, ttl: float | None) -> bool:
        """Store `value` when `key` is missing."""
        self.calls.append(("add", (key,)))
        if self._read(key) is not None:
            return False
        self._write(key, value, ttl)
        return True

    async def delete(self, key: str) -> None:
        """Remove `key`."""
        self.calls.append(("delete", (key,)))
        self._entries.pop(key, None)

    async def increment(self, key: str, delta: int, ttl: float | None) -> int:
        """Add `delta` to the counter under `key`."""
        self.calls.append(("increment", (key,)))
        value = int(self._read(key) or 0) + delta
        self._write(key, value, ttl)
        return value

    async def close(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __repr__(self) -> str:
        return f"InMemoryCache({len(self._entries)} entries)"


class FailingCache:
    """A `CacheBackend` that is always down: every call raises `error`, to test failing open.

    `calls` counts the calls made to it.
    """

    def __init__(self, error: Callable[[], Exception] = lambda: ConnectionError("the cache is down")) -> None:
        self._error = error
        self.calls = 0

    def _fail(self) -> Exception:
        self.calls += 1
        return self._error()

    async def get(self, key: str) -> Any:  # noqa: ARG002 - the port's signature
        """Raise."""
        raise self._fail()

    async def multi_get(self, keys: Sequence[str]) -> Sequence[Any]:  # noqa: ARG002 - the port's signature
        """Raise."""
        raise self._fail()

    async def set(self, key: str, value: Any, ttl: float | None) -> None:  # noqa: ARG002 - the port's signature
        """Raise."""
        raise self._fail()

    async def add(self, key: str, value: Any, ttl: float | None) -> bool:  # noqa: ARG002 - the port's signature
        """Raise."""
        raise self._fail()

    async def delete(self, key: str) -> None:  # noqa: ARG002 - the port's signature
        """Raise."""
        raise self._fail()

    async def increment(self, key: str, delta: int, ttl: float | None) -> int:  # noqa: ARG002 - the port's signature
        """Raise."""
        raise self._fail()

    async def close(self) -> None:
        """Do nothing."""

    def __repr__(self) -> str:
        return "FailingCache()"
