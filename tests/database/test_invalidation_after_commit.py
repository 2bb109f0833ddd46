"""CacheInvalidation with the real Transaction on a SQLite file: after the commit, never on rollback.

The buses come from a DeclarativeContainer, as an application wires them. Queries read through
`database.read_session()` and are cached by `QueryCache`; commands rename people through
`database.session`. The cache records, for every invalidation, whether a transaction was still open
and what a fresh read session saw at that moment, so the tests can tell "after the commit" from
"before it".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from dependency_injector import containers, providers
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update

from cqrskit import (
    AffectedEntity,
    Command,
    CommandBus,
    ConfigurationError,
    Context,
    NotFoundError,
    OperationStatus,
    Query,
    QueryBus,
    Result,
)
from cqrskit.behaviours import Retry, RetryPolicy
from cqrskit.caching import CacheInvalidation, CachePolicy, QueryCache
from cqrskit.sqlalchemy import Database, Transaction
from cqrskit.testing import InMemoryCache

metadata = MetaData()
people = Table(
    "people",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), nullable=False, unique=True),
)


@attrs.frozen
class PersonDto:
    id: int
    name: str


@attrs.frozen
class GetPerson(Query[PersonDto]):
    person_id: int


@attrs.frozen
class RenamePerson(Command[None]):
    """Rename one person; `then` makes the handler raise or return a failure after writing."""

    person_id: int
    name: str
    then: str = "succeed"  # "succeed", "raise" or "fail"


@attrs.frozen
class RenameBoth(Command[OperationStatus]):
    """Rename `outer_id`, then dispatch RenamePerson(`inner_id`) nested; optionally raise at the end."""

    outer_id: int
    inner_id: int
    name: str
    inner_then: str = "succeed"
    then: str = "succeed"


async def names(database: Database) -> dict[int, str]:
    """Every person's committed name, read through a fresh read session."""
    async with database.read_session() as session:
        return {row.id: row.name for row in await session.execute(select(people.c.id, people.c.name))}


class RecordingCache(InMemoryCache):
    """An InMemoryCache that notes, at each invalidation, whether a transaction was open and the rows."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self._database = database
        self.invalidations: list[tuple[str, bool, dict[int, str]]] = []

    async def increment(self, key: str, delta: int, ttl: float | None) -> int:
        self.invalidations.append((key, self._database.in_transaction(), await names(self._database)))
        return await super().increment(key, delta, ttl)


class GetPersonHandler:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def handle(self, query: GetPerson, context: Context) -> PersonDto:
        async with self._database.read_session() as session:
            found = (
                await session.execute(select(people.c.name).where(people.c.id == query.person_id))
            ).scalar_one_or_none()
        if found is None:
            raise NotFoundError(f"no person {query.person_id}")
        return PersonDto(query.person_id, found)


async def rename(database: Database, person_id: int, name: str) -> Result[None]:
    await database.session.execute(update(people).where(people.c.id == person_id).values(name=name))
    return Result.success(None, affected_entities=[AffectedEntity("person", str(person_id), "updated")])


class RenamePersonHandler:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def handle(self, command: RenamePerson, context: Context) -> Result[None]:
        result = await rename(self._database, command.person_id, command.name)
        if command.then == "raise":
            raise RuntimeError("the handler failed after writing")
        if command.then == "fail":
            return Result.failure(OperationStatus.CONFLICT, {"name": "refused after writing"})
        return result


class RenameBothHandler:
    """Renames one person, then another through a nested command; notes what was invalidated by then."""

    def __init__(self, database: Database, cache: RecordingCache, bus: Callable[[], CommandBus]) -> None:
        self._database = database
        self._cache = cache
        self._bus = bus
        self.invalidated_before_outer_commit: list[list[str]] = []

    async def handle(self, command: RenameBoth, context: Context) -> Result[OperationStatus]:
        await rename(self._database, command.outer_id, command.name)
        nested = await self._bus().execute(
            RenamePerson(command.inner_id, command.name + " (inner)", command.inner_then),
            context=context.child(),
        )
        self.invalidated_before_outer_commit.append([key for key, _, _ in self._cache.invalidations])
        if command.then == "raise":
            raise RuntimeError("the outer handler failed after the nested command")
        entity = AffectedEntity("person", str(command.outer_id), "updated")
        return Result.success(nested.status, affected_entities=[entity])


def person_tags(query: GetPerson) -> list[tuple[str, str]]:
    return [("person", str(query.person_id))]


class Container(containers.DeclarativeContainer):
    """One SQLite database and one cache shared by a query bus and a command bus.

    ``config.order`` says where CacheInvalidation sits: ``"canonical"`` (outside Retry and
    Transaction, as the canonical order has it) or ``"inside"`` (inside Transaction, which the bus
    refuses).
    """

    config = providers.Configuration()
    database = providers.Singleton(Database, url=config.database_url)
    cache = providers.Singleton(RecordingCache, database=database)
    query_bus = providers.Singleton(
        QueryBus,
        handlers=providers.Dict({GetPerson: providers.Factory(GetPersonHandler, database=database)}),
        behaviours=providers.List(
            providers.Singleton(
                QueryCache,
                cache=cache,
                policies=providers.Object({GetPerson: CachePolicy(ttl=300, tags=person_tags)}),
            )
        ),
    )
    invalidation = providers.Singleton(CacheInvalidation, cache=cache)
    retry = providers.Singleton(Retry, RetryPolicy(max_attempts=3, delay=0))
    transaction = providers.Singleton(Transaction, database=database)
    rename_both = providers.Singleton(RenameBothHandler, database=database, cache=cache)
    command_bus = providers.Singleton(
        CommandBus,
        handlers=providers.Dict(
            {
                RenamePerson: providers.Factory(RenamePersonHandler, database=database),
                RenameBoth: rename_both,
            }
        ),
        behaviours=providers.Selector(
            config.order,
            canonical=providers.List(invalidation, retry, transaction),
            inside=providers.List(retry, transaction, invalidation),
        ),
    )


# The nested handler dispatches through the bus it is routed on.
Container.rename_both.add_kwargs(bus=Container.command_bus.provider)


def test_invalidation_inside_the_transaction_is_refused(tmp_path: Path) -> None:
    """Listed after Transaction, CacheInvalidation breaks the canonical order: the bus is not built."""
    container = Container(
        config={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'people.db'}", "order": "inside"}
    )
    with pytest.raises(ConfigurationError, match="list CacheInvalidation before Transaction"):
        container.command_bus()


@pytest.fixture(params=["canonical"])
async def container(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Container]:
    container = Container(
        config={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'people.db'}", "order": request.param}
    )
    database = container.database()
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(insert(people), [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}])
    try:
        yield container
    finally:
        await database.dispose()


async def cached(container: Container, person_id: int) -> Result[PersonDto]:
    """GetPerson through the container's query bus."""
    return await container.query_bus().execute(GetPerson(person_id))


def is_hit(result: Result[Any]) -> bool:
    assert result.cache_info is not None
    return result.cache_info.hit


class TestInvalidationWithTransaction:
    """CacheInvalidation and the real Transaction on one command bus, in both places it may sit."""

    async def test_a_committed_update_is_a_miss_with_the_new_data(self, container: Container) -> None:
        """GetPerson(1) cached, RenamePerson(1) commits, GetPerson(1) misses and reads the new name."""
        assert not is_hit(await cached(container, 1))
        assert is_hit(await cached(container, 1))
        await cached(container, 2)
        result = await container.command_bus().execute(RenamePerson(1, "Augusta"))
        assert result.is_success
        after = await cached(container, 1)
        assert not is_hit(after)
        assert after.data == PersonDto(1, "Augusta")
        assert is_hit(await cached(container, 2))

    async def test_invalidation_runs_after_the_commit(self, container: Container) -> None:
        """When the tags are bumped no transaction is open and a fresh session already sees the change."""
        await container.command_bus().execute(RenamePerson(1, "Augusta"))
        invalidations = container.cache().invalidations
        assert [key for key, _, _ in invalidations] == ["tag:person:1", "tag:person:*"]
        for _, in_transaction, seen in invalidations:
            assert not in_transaction
            assert seen[1] == "Augusta"

    @pytest.mark.parametrize(
        ("then", "status"),
        [("raise", OperationStatus.FAILED), ("fail", OperationStatus.CONFLICT)],
    )
    async def test_a_rolled_back_command_invalidates_nothing(
        self, container: Container, then: str, status: OperationStatus
    ) -> None:
        """A handler that writes then raises, or returns a failure: no row changes, no tag is bumped."""
        await cached(container, 1)
        result = await container.command_bus().execute(RenamePerson(1, "Augusta", then=then))
        assert result.status is status
        assert container.cache().invalidations == []
        assert await names(container.database()) == {1: "Ada", 2: "Grace"}
        hit = await cached(container, 1)
        assert is_hit(hit)
        assert hit.data == PersonDto(1, "Ada")

    async def test_a_unique_violation_invalidates_nothing(self, container: Container) -> None:
        """Renaming to a name taken by someone else is CONFLICT, rolled back, and bumps no tag."""
        await cached(container, 1)
        result = await container.command_bus().execute(RenamePerson(1, "Grace"))
        assert result.status is OperationStatus.CONFLICT
        assert container.cache().invalidations == []
        assert is_hit(await cached(container, 1))


class TestNestedInvalidation:
    """A nested command's invalidation waits for the outermost commit and dies with its rollback."""

    async def test_waits_for_the_outer_commit(self, container: Container) -> None:
        """Nothing is bumped when the nested command returns; both people are after the outer commit."""
        await cached(container, 1)
        await cached(container, 2)
        result = await container.command_bus().execute(RenameBoth(1, 2, "Renamed"))
        assert result.is_success
        assert result.data is OperationStatus.SUCCESS
        assert container.rename_both().invalidated_before_outer_commit == [[]]
        invalidations = container.cache().invalidations
        assert {key for key, _, _ in invalidations} == {"tag:person:1", "tag:person:2", "tag:person:*"}
        assert all(not in_transaction for _, in_transaction, _ in invalidations)
        assert all(seen == {1: "Renamed", 2: "Renamed (inner)"} for _, _, seen in invalidations)
        assert (await cached(container, 2)).data == PersonDto(2, "Renamed (inner)")

    async def test_dropped_when_the_outer_command_rolls_back(self, container: Container) -> None:
        """The nested command succeeded, the outer one raised: no write stays and no tag is bumped."""
        await cached(container, 2)
        result = await container.command_bus().execute(RenameBoth(1, 2, "Renamed", then="raise"))
        assert result.status is OperationStatus.FAILED
        assert container.cache().invalidations == []
        assert await names(container.database()) == {1: "Ada", 2: "Grace"}
        assert is_hit(await cached(container, 2))

    async def test_a_failed_nested_command_invalidates_only_the_outer_entity(
        self, container: Container
    ) -> None:
        """The nested command raised and was rolled back to its savepoint: only person 1 is bumped."""
        await cached(container, 2)
        result = await container.command_bus().execute(RenameBoth(1, 2, "Renamed", inner_then="raise"))
        assert result.data is OperationStatus.FAILED
        assert {key for key, _, _ in container.cache().invalidations} == {"tag:person:1", "tag:person:*"}
        assert await names(container.database()) == {1: "Renamed", 2: "Grace"}
        assert is_hit(await cached(container, 2))
