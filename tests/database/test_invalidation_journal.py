"""CacheInvalidation with a SqlInvalidationJournal on a SQLite file: no invalidation is ever dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cqrskit import CommandBus, ConfigurationError, Context, Result
from cqrskit.behaviours import Retry
from cqrskit.caching import CacheInvalidation
from cqrskit.sqlalchemy import Database, SqlInvalidationJournal, Transaction
from cqrskit.testing import InMemoryCache
from tests.database.journal_app import GetName, Rename, RenameHandler, Service, eventually


class SwitchableCache(InMemoryCache):
    """An in-memory cache that can be taken down: every call then raises ConnectionError."""

    down = False

    async def get(self, key: str, /) -> Any:
        self._check()
        return await super().get(key)

    async def multi_get(self, keys: Sequence[str], /) -> Sequence[Any]:
        self._check()
        return await super().multi_get(keys)

    async def set(self, key: str, value: Any, ttl: float | None, /) -> None:
        self._check()
        await super().set(key, value, ttl)

    async def increment(self, key: str, delta: int, ttl: float | None, /) -> int:
        self._check()
        return await super().increment(key, delta, ttl)

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("the cache is down")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    service = Service(database, SwitchableCache())
    await service.create_tables()
    try:
        yield service
    finally:
        await database.dispose()


async def no_pending(service: Service) -> bool:
    return not await service.journal.pending(10)


def cache_of(service: Service) -> SwitchableCache:
    backend = service.invalidation.backend
    assert isinstance(backend, SwitchableCache)
    return backend


async def test_the_fast_path_bumps_at_once_and_leaves_no_record(service: Service) -> None:
    assert await service.name() == ("old", False)
    assert await service.name() == ("old", True)
    (await service.commands.execute(Rename("1", "new"))).unwrap()
    assert await service.name() == ("new", False)
    assert await service.journal.pending(10) == []


async def test_a_failed_invalidation_is_kept_and_applied_when_the_cache_is_back(service: Service) -> None:
    await service.name()
    cache_of(service).down = True
    (await service.commands.execute(Rename("1", "new"))).unwrap()  # the command still succeeds
    [(_, keys)] = await service.journal.pending(10)
    assert set(keys) == {"tag:thing:1", "tag:thing:*"}
    assert await service.invalidation.apply_pending() == 0  # still down: kept
    cache_of(service).down = False
    assert await service.name() == ("old", True)  # stale until applied
    assert await service.invalidation.apply_pending() == 1
    assert await service.name() == ("new", False)
    assert await service.journal.pending(10) == []


async def test_a_rolled_back_command_records_nothing(service: Service) -> None:
    cache_of(service).down = True
    result = await service.commands.execute(Rename("1", "new", fail=True))
    assert result.is_failure
    assert await service.journal.pending(10) == []


async def test_run_applies_records_left_by_another_process(service: Service, tmp_path: Path) -> None:
    """A record committed by a process that died before its fast path is applied by another's run()."""
    await service.name()
    await service.journal.record(["tag:thing:1", "tag:thing:*"])  # as a dead process left it
    other = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    invalidation = CacheInvalidation(
        service.invalidation.backend, journal=SqlInvalidationJournal(other), retry_interval=0.05
    )
    task = asyncio.create_task(invalidation.run())
    try:
        await eventually(lambda: no_pending(service), what="the record applied")
    finally:
        invalidation.stop()
        await task
        await other.dispose()
    assert await service.name() == ("old", False)  # the entry was dropped: a miss


class RenameInItsOwnTransaction(RenameHandler):
    """Writes in a transaction it opens and commits itself: none is open when CacheInvalidation runs."""

    async def handle(self, command: Rename, context: Context) -> Result[None]:
        async with self.database.transaction():
            return await super().handle(command, context)


async def test_without_a_transaction_only_a_failure_is_recorded(service: Service) -> None:
    handler = RenameInItsOwnTransaction(service.database, service.table)
    bus = CommandBus({Rename: handler}, [service.invalidation])
    (await bus.execute(Rename("1", "newer"))).unwrap()
    assert await service.journal.pending(10) == []  # bumped at once
    cache_of(service).down = True
    (await bus.execute(Rename("1", "new"))).unwrap()
    assert len(await service.journal.pending(10)) == 1  # recorded in a transaction of its own


def test_with_a_journal_it_must_sit_inside_transaction(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    invalidation = CacheInvalidation(InMemoryCache(), journal=SqlInvalidationJournal(database))
    with pytest.raises(ConfigurationError):
        CommandBus(
            {Rename: RenameHandler(database, Service(database, InMemoryCache()).table)},
            [invalidation, Retry(), Transaction(database)],
        )


async def test_a_tenants_journaled_invalidation_spares_other_tenants(service: Service) -> None:
    """Cache down: Acme's rename is journaled with Acme's tag keys; applied later, Globex's entry stays."""
    acme, globex = Context(tenant="acme"), Context(tenant="globex")
    for context in (acme, globex):
        await service.queries.execute(GetName("1"), context)
    cache_of(service).down = True
    (await service.commands.execute(Rename("1", "new"), acme)).unwrap()
    [(_, keys)] = await service.journal.pending(10)
    assert set(keys) == {"tenant:acme:tag:thing:1", "tenant:acme:tag:thing:*"}
    cache_of(service).down = False
    assert await service.invalidation.apply_pending() == 1
    acme_read = await service.queries.execute(GetName("1"), acme)
    globex_read = await service.queries.execute(GetName("1"), globex)
    assert acme_read.cache_info is not None
    assert globex_read.cache_info is not None
    assert (acme_read.data, acme_read.cache_info.hit) == ("new", False)
    assert (globex_read.data, globex_read.cache_info.hit) == ("old", True)  # its entry was not dropped
