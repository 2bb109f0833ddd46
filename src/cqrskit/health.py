"""Readiness checks for any app: the database, the cache, the broker, relay lag, consumer liveness.

A check is an async callable that raises, or returns False, when what it checks is down. `Readiness`
runs named checks concurrently, each under a timeout, and says which are down; the reasons go to the
log, never into the answer (they may hold hosts, users or SQL)::

    readiness = Readiness({
        "database": database_check(database),
        "cache": cache_check(cache),
        "broker": transport_check(transport),
        "outbox": relay_lag_check(relay, max_age=60.0),
        "consumer": consumer_check(consumer),
    })
    report = await readiness.check()   # HealthReport(ok=False, down=("cache",))

Liveness (``/healthz``) should check nothing but the process itself; readiness (``/readyz``) is what
these checks are for (docs/operations.md shows both as Kubernetes probes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from cqrskit._logs import library_logger

if TYPE_CHECKING:
    from cqrskit.caching._port import CacheBackend
    from cqrskit.events._consumer import Consumer
    from cqrskit.events._relay import OutboxRelay
    from cqrskit.sqlalchemy._database import Database

__all__ = [
    "Check",
    "HealthReport",
    "Readiness",
    "cache_check",
    "consumer_check",
    "database_check",
    "relay_lag_check",
    "transport_check",
]

Check = Callable[[], Awaitable[object]]
"""A readiness check: raises, or returns False, when what it checks is down; anything else is up."""


@attrs.frozen
class HealthReport:
    """What `Readiness.check` found: `ok` when nothing is down, and the names of what is."""

    ok: bool
    down: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        """Return ``{"status": "ok"}`` or ``{"status": "unavailable", "down": [...]}``, for a probe."""
        if self.ok:
            return {"status": "ok"}
        return {"status": "unavailable", "down": list(self.down)}


class Readiness:
    """Runs named checks concurrently, each within `timeout` seconds, and reports what is down.

    A check that raises, returns False or takes longer than `timeout` counts as down; why is logged
    (``readiness_check_failed``, with the exception) and not reported.
    """

    def __init__(self, checks: Mapping[str, Check], *, timeout: float = 2.0, logger: Any = None) -> None:
        self._checks = dict(checks)
        self._timeout = timeout
        self._logger = logger if logger is not None else library_logger("cqrskit.health")

    @property
    def names(self) -> tuple[str, ...]:
        """The checks' names, in the order given."""
        return tuple(self._checks)

    def with_checks(self, checks: Mapping[str, Check]) -> Readiness:
        """Return a `Readiness` with these checks added (same timeout)."""
        return Readiness({**self._checks, **checks}, timeout=self._timeout, logger=self._logger)

    async def check(self) -> HealthReport:
        """Run every check; return a report naming those that are down."""
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._run(name, self._checks[name]) for name in names))
        down = tuple(name for name, up in zip(names, outcomes, strict=True) if not up)
        return HealthReport(not down, down)

    async def _run(self, name: str, check: Check) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                outcome = await check()
        except Exception as exc:  # noqa: BLE001 - any failure means down; it is logged, not raised
            self._logger.warning("readiness_check_failed", check=name, error_type=type(exc).__name__)
            return False
        if outcome is False:
            self._logger.warning("readiness_check_failed", check=name)
            return False
        return True

    def __repr__(self) -> str:
        return f"Readiness(checks={list(self._checks)!r}, timeout={self._timeout!r})"


def database_check(database: Database) -> Check:
    """Check that `database` answers ``SELECT 1`` on a connection of its pool."""

    async def check() -> None:
        import sqlalchemy as sa  # noqa: PLC0415 - only apps with a database need it

        async with database.engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    return check


def cache_check(cache: CacheBackend) -> Check:
    """Check that `cache` answers a read (of a key nobody writes)."""

    async def check() -> None:
        await cache.get("cqrskit:readiness")

    return check


def transport_check(transport: Any) -> Check:
    """Check the broker connection with the transport's ``ping()`` (`RabbitMQTransport`, `NatsTransport`)."""

    async def check() -> None:
        await transport.ping()

    return check


def relay_lag_check(relay: OutboxRelay, max_age: float = 60.0) -> Check:
    """Check that the oldest unsent outbox row is younger than `max_age` seconds (the relay keeps up)."""

    async def check() -> bool:
        backlog = await relay.backlog()
        return backlog.oldest_age is None or backlog.oldest_age <= max_age

    return check


def consumer_check(consumer: Consumer) -> Check:
    """Check that `consumer` is consuming its queue (in this process)."""

    async def check() -> bool:
        return consumer.running

    return check
