"""Loading a missed key once: in this process (`SingleFlight`) and across processes (`LoadLock`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from cqrskit.caching._failures import FailureLog
from cqrskit.caching._port import CacheBackend

__all__ = ["LoadLock", "SingleFlight"]

T = TypeVar("T")
H = TypeVar("H")


class SingleFlight(Generic[T]):
    """Runs one load per key at a time in this process; callers arriving meanwhile share its outcome.

    A caller that finds a load of its key running waits for it and gets its value, or its exception.
    When the loading caller is cancelled the waiters are not: each looks again, and the first to find
    no load running starts one (`QueryCache`'s load reads the cache first, so a waiter that comes
    after a finished load gets its stored value). A waiter that is cancelled just stops waiting.
    """

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, load: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Return ``(load(), True)``, or ``(value, False)`` with the value of the load already running."""
        flights = self._flights
        while (flight := flights.get(key)) is not None:
            # asyncio.wait does not cancel the flight when this caller is cancelled.
            await asyncio.wait((flight,))
            if not flight.cancelled():
                return flight.result(), False  # raises the loader's exception, when it raised
        flight = asyncio.get_running_loop().create_future()
        flights[key] = flight
        try:
            value = await load()
        except Exception as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: asyncio must not log it when nobody else waited
            raise
        except BaseException:
            flight.cancel()
            raise
        else:
            flight.set_result(value)
            return value, True
        finally:
            if flights.get(key) is flight:
                del flights[key]


class LoadLock:
    """A lock in the shared cache, so one process loads a missed key while the others wait for it.

    It is an optimisation, not a guarantee: it is released with a plain delete and expires after
    `ttl` seconds; on any cache failure the caller loads without it.
    """

    __slots__ = ("_backend", "_failures", "_poll", "_ttl")

    def __init__(self, backend: CacheBackend, *, ttl: float, poll: float, failures: FailureLog) -> None:
        self._backend = backend
        self._ttl = ttl
        self._poll = poll
        self._failures = failures

    async def take_or_wait(
        self, key: str, tag_keys: Sequence[str] | None, decode: Callable[[Any, list[Any]], H | None]
    ) -> tuple[str | None, H | None]:
        """Take the lock of `key`, or wait for the process that holds it to store its entry.

        Return the lock key when this process loads, or what `decode(entry, tag_versions)` made of
        the other process's entry; both None when this process should load without the lock (the
        other gave up, failed, or stored nothing usable, or the cache failed).
        """
        lock_key = "lock:" + key
        try:
            if await self._backend.add(lock_key, 1, self._ttl):
                return lock_key, None
        except Exception as exc:  # noqa: BLE001 - fail open: load without the lock
            self._failures.record("lock", exc, key=key)
            return None, None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ttl
        while loop.time() < deadline:
            await asyncio.sleep(self._poll)
            try:
                found = await self._backend.multi_get([key, lock_key, *(tag_keys or ())])
            except Exception as exc:  # noqa: BLE001 - fail open
                self._failures.record("get", exc, key=key)
                break
            if found[0] is not None:
                hit = decode(found[0], list(found[2:]))
                if hit is not None:
                    return None, hit
            if found[1] is None:
                break  # the other loader finished without storing a usable entry: load here
        return None, None

    async def release(self, lock_key: str) -> None:
        """Delete the lock this process took; a failure is logged (the lock expires by itself)."""
        try:
            await self._backend.delete(lock_key)
        except Exception as exc:  # noqa: BLE001 - the lock expires by itself
            self._failures.record("unlock", exc, key=lock_key)
