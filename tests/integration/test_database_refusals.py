"""Through the bus: a value the database refuses is VALIDATION_ERROR, a database out of reach UNAVAILABLE.

On SQLite and on PostgreSQL (a schema of the test's own), and against a port where nothing listens.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs
import pytest
import structlog
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, insert, select, text

from cqrskit import Command, CommandBus, Context, OperationStatus, Query, QueryBus, UnavailableError
from cqrskit.behaviours import Logging, Retry, RetryPolicy
from cqrskit.sqlalchemy import Database, Transaction
from tests import services

REFUSED = "a value could not be stored"


@attrs.frozen
class Store(Command[None]):
    """Insert one row with these values."""

    number: int = 1
    label: str = "x"


@attrs.frozen
class Look(Query[int]):
    """Count the rows whose label is this one."""

    label: str = "x"


def tables(schema: str | None) -> tuple[MetaData, Table]:
    metadata = MetaData(schema=schema)
    table = Table(
        "refusals",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("number", BigInteger, nullable=False),
        Column("label", String(20), nullable=False),
    )
    return metadata, table


def buses(database: Database, table: Table, attempts: list[int]) -> tuple[CommandBus, QueryBus]:
    class StoreHandler:
        async def handle(self, command: Store, context: Context) -> None:
            attempts.append(1)
            await database.session.execute(insert(table).values(number=command.number, label=command.label))

    class LookHandler:
        async def handle(self, query: Look, context: Context) -> int:
            attempts.append(1)
            async with database.read_session() as session:
                found = await session.execute(select(table.c.id).where(table.c.label == query.label))
                return len(found.all())

    retry = Retry(RetryPolicy(max_attempts=2, delay=0))
    # log_fields=False: the message's own fields are not what these tests look for in the logs.
    logging = Logging(log_fields=False)
    commands = CommandBus({Store: StoreHandler()}, [logging, retry, Transaction(database)])
    queries = QueryBus({Look: LookHandler()}, [logging, retry])
    return commands, queries


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stored(
    request: pytest.FixtureRequest, tmp_path: Any, unique_name: str
) -> AsyncIterator[tuple[Database, Table]]:
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'refusals.db'}")
        metadata, table = tables(None)
        async with database.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        yield database, table
        await database.dispose()
        return
    url = services.require("PostgreSQL", services.POSTGRES_URL)
    database = Database(url)
    metadata, table = tables(unique_name)
    async with database.engine.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{unique_name}"'))
        await connection.run_sync(metadata.create_all)
    try:
        yield database, table
    finally:
        async with database.engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{unique_name}" CASCADE'))
        await database.dispose()


def assert_refused(result: Any, attempts: list[int]) -> None:
    assert result.status is OperationStatus.VALIDATION_ERROR, result
    assert set(result.errors) == {"detail"}
    assert result.errors["detail"].startswith(REFUSED)
    assert attempts == [1]  # a refused value is not retried


class TestRefusedValues:
    """The second line of defence: what gets past the boundary and is refused by the database is a 4xx."""

    @pytest.mark.parametrize(
        "command",
        [Store(number=2**70), Store(label="a\x00b"), Store(label="a\ud800b")],
        ids=["int-over-64-bit", "nul", "lone-surrogate"],
    )
    async def test_a_command(self, stored: tuple[Database, Table], command: Store) -> None:
        database, table = stored
        if database.dialect_name == "sqlite" and "\x00" in command.label:
            pytest.skip("SQLite stores a NUL; nothing is refused")
        attempts: list[int] = []
        commands, _ = buses(database, table, attempts)
        assert_refused(await commands.execute(command), attempts)

    async def test_a_query(self, stored: tuple[Database, Table]) -> None:
        database, table = stored
        attempts: list[int] = []
        _, queries = buses(database, table, attempts)
        assert_refused(await queries.execute(Look(label="a\ud800b")), attempts)

    async def test_the_log_names_no_value(self, stored: tuple[Database, Table]) -> None:
        database, table = stored
        attempts: list[int] = []
        commands, _ = buses(database, table, attempts)
        with structlog.testing.capture_logs() as logs:
            await commands.execute(Store(number=2**70, label="secret-label"))
        assert "secret-label" not in repr(logs)
        assert str(2**70) not in repr(logs)
        assert any(entry["event"] == "database_refused_value" for entry in logs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(params=["tcp", "name"])
def nowhere(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL URL nothing answers: a port nothing listens on, or a host name that does not resolve."""
    if request.param == "tcp":
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"
    else:
        yield "postgresql+asyncpg://postgres@no-such-host.invalid:5432/none"


class TestUnavailable:
    """A database that cannot be reached is UNAVAILABLE, after the retries, for commands and queries."""

    async def test_a_command(self, nowhere: str) -> None:
        database = Database(nowhere)
        attempts: list[int] = []
        commands, _ = buses(database, tables(None)[1], attempts)
        result = await commands.execute(Store())
        assert result.status is OperationStatus.UNAVAILABLE
        assert result.errors == {"detail": "the database is unavailable; try again later"}
        assert attempts == [1, 1]  # retried once (max_attempts=2), then UNAVAILABLE
        await database.dispose()

    async def test_a_query(self, nowhere: str) -> None:
        database = Database(nowhere)
        attempts: list[int] = []
        _, queries = buses(database, tables(None)[1], attempts)
        result = await queries.execute(Look())
        assert result.status is OperationStatus.UNAVAILABLE
        assert attempts == [1, 1]
        await database.dispose()

    @pytest.mark.parametrize("make", [lambda: ConnectionRefusedError(111, "refused"), ConnectionResetError])
    async def test_a_connection_error_a_handler_raises(self, make: Callable[[], Exception]) -> None:
        """The core's own rule, with no database at all: a ConnectionError is UNAVAILABLE, not FAILED."""

        class Calls:
            async def handle(self, query: Look, context: Context) -> int:
                try:
                    raise make()
                except OSError as exc:
                    raise RuntimeError("the pricing service did not answer") from exc

        with structlog.testing.capture_logs() as logs:
            result = await QueryBus({Look: Calls()}, [Logging()]).execute(Look())
        assert result.status is OperationStatus.UNAVAILABLE
        assert "refused" not in repr(result.errors)
        assert not [entry for entry in logs if entry.get("exc_info")]  # no traceback for an outage

    async def test_unavailable_error_raised_by_hand(self) -> None:
        class Down:
            async def handle(self, query: Look, context: Context) -> int:
                raise UnavailableError("the search index is being rebuilt")

        result = await QueryBus({Look: Down()}).execute(Look())
        assert result.status is OperationStatus.UNAVAILABLE
        assert result.errors == {"detail": "the search index is being rebuilt"}
