"""The Transaction behaviour on real SQLite files: directly, and through a bus built by a container."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from sqlalchemy import event, insert
from sqlalchemy.util import await_

from cqrskit import (
    Command,
    CommandBus,
    ConfigurationError,
    Context,
    OperationStatus,
    Query,
    QueryBus,
    Result,
    Stage,
)
from cqrskit.behaviours import Retry, RetryPolicy, Timeout
from cqrskit.sqlalchemy import Database, NoActiveSessionError, Transaction
from tests.database.support import (
    AddItem,
    AddWithNested,
    Container,
    Increment,
    counter_value,
    create_tables,
    item_names,
    items,
)


@attrs.frozen
class Other(Command[None]):
    """A command Transaction is given no isolation for."""


@attrs.frozen
class Look(Query[None]):
    """A query: Transaction has no business on its bus."""


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[Container]:
    container = Container(config={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"})
    database = container.database()
    await create_tables(database)
    try:
        yield container
    finally:
        await database.dispose()


def success(data: Any = None) -> Result[Any]:
    return Result.success(data)


class TestTransactionOnTheBus:
    """Commands through a container-built bus with Retry and Transaction on a SQLite file."""

    async def test_twenty_concurrent_increments_end_at_twenty(self, container: Container) -> None:
        """BEGIN IMMEDIATE serializes read-modify-write: no update of twenty is lost."""
        bus = container.command_bus()
        results = await asyncio.gather(*(bus.execute(Increment()) for _ in range(20)))
        assert {r.status for r in results} == {OperationStatus.SUCCESS}
        assert sorted(r.data for r in results) == list(range(1, 21))
        assert await counter_value(container.database()) == 20
        assert container.database().engine.pool.checkedout() == 0

    async def test_a_handler_that_writes_then_raises_leaves_no_row(self, container: Container) -> None:
        """The exception rolls the insert back, and its after-commit work never runs."""
        result = await container.command_bus().execute(AddItem("ghost", then="raise"))
        assert result.status is OperationStatus.FAILED
        assert await item_names(container.database()) == []
        assert container.committed() == []

    async def test_a_failure_result_rolls_back(self, container: Container) -> None:
        """A handler that writes and then returns a failure Result commits nothing."""
        result = await container.command_bus().execute(AddItem("ghost", then="fail"))
        assert result.status is OperationStatus.CONFLICT
        assert await item_names(container.database()) == []
        assert container.committed() == []

    async def test_success_commits_and_then_runs_after_commit_work(self, container: Container) -> None:
        """The row is committed and the deferred work runs once, after the commit."""
        result = await container.command_bus().execute(AddItem("kept"))
        assert result.status is OperationStatus.SUCCESS
        assert await item_names(container.database()) == ["kept"]
        assert container.committed() == ["kept"]

    async def test_nested_failure_rolls_back_only_the_inner_write(self, container: Container) -> None:
        """An inner command failing inside a handler that carries on loses its write; the outer keeps its."""
        result = await container.command_bus().execute(AddWithNested("outer", "inner", nested_then="raise"))
        assert result.status is OperationStatus.SUCCESS
        assert result.data is OperationStatus.FAILED
        assert await item_names(container.database()) == ["outer"]
        assert container.committed() == ["outer"]

    async def test_nested_failure_result_rolls_back_only_the_inner_write(self, container: Container) -> None:
        """The same holds when the inner command returns a failure Result instead of raising."""
        result = await container.command_bus().execute(AddWithNested("outer", "inner", nested_then="fail"))
        assert result.data is OperationStatus.CONFLICT
        assert await item_names(container.database()) == ["outer"]

    async def test_nested_unique_violation_is_a_conflict_for_the_inner_command(
        self, container: Container
    ) -> None:
        """An inner insert that clashes with the outer one is CONFLICT for the inner command only."""
        result = await container.command_bus().execute(AddWithNested("same", "same"))
        assert result.status is OperationStatus.SUCCESS
        assert result.data is OperationStatus.CONFLICT
        assert await item_names(container.database()) == ["same"]

    async def test_nested_success_waits_for_the_outer_commit(self, container: Container) -> None:
        """Both writes commit together, and both after-commit notes run after the outer commit."""
        result = await container.command_bus().execute(AddWithNested("outer", "inner"))
        assert result.data is OperationStatus.SUCCESS
        assert await item_names(container.database()) == ["inner", "outer"]
        assert container.committed() == ["outer", "inner"]

    async def test_an_outer_failure_rolls_back_the_nested_write_too(self, container: Container) -> None:
        """When the outer handler fails after a nested success, no write and no deferred work survives."""
        result = await container.command_bus().execute(AddWithNested("outer", "inner", then="raise"))
        assert result.status is OperationStatus.CONFLICT
        assert await item_names(container.database()) == []
        assert container.committed() == []

    async def test_unique_violation_is_conflict(self, container: Container) -> None:
        """Inserting a duplicate name returns CONFLICT without leaking SQL to the caller."""
        bus = container.command_bus()
        assert (await bus.execute(AddItem("dup"))).is_success
        result = await bus.execute(AddItem("dup"))
        assert result.status is OperationStatus.CONFLICT
        assert "INSERT" not in str(result.errors)
        assert await item_names(container.database()) == ["dup"]

    async def test_concurrent_dispatches_get_separate_sessions(self, container: Container) -> None:
        """Each concurrent dispatch sees its own session, never another's."""
        database = container.database()
        seen: list[object] = []

        class Probe:
            async def handle(self, command: Other, context: Context) -> None:
                session = database.session
                await asyncio.sleep(0)
                assert database.session is session
                seen.append(session)

        bus = CommandBus({Other: Probe()}, [Transaction(database)])
        results = await asyncio.gather(*(bus.execute(Other()) for _ in range(10)))
        assert all(r.is_success for r in results)
        assert len({id(s) for s in seen}) == 10

    async def test_a_nested_commands_retry_passes_through(self, database: Database) -> None:
        """A transient error inside a joined transaction is not retried by the inner Retry."""
        inner_attempts: list[int] = []
        buses: list[CommandBus] = []

        class Serialization(Exception):
            sqlstate = "40001"

        class Handler:
            async def handle(self, command: AddItem, context: Context) -> str:
                if command.name == "inner":
                    inner_attempts.append(1)
                    raise Serialization
                await database.session.execute(insert(items).values(name=command.name))
                nested = await buses[0].execute(AddItem("inner"), context=context.child())
                assert nested.status is OperationStatus.FAILED
                return command.name

        retry = Retry(RetryPolicy(max_attempts=4, delay=0))
        buses.append(CommandBus({AddItem: Handler()}, [retry, Transaction(database)]))
        result = await buses[0].execute(AddItem("outer"))
        assert result.is_success
        assert inner_attempts == [1]
        assert await item_names(database) == ["outer"]

    async def test_the_outer_retry_reruns_the_transaction_a_nested_command_failed_transiently(
        self, database: Database
    ) -> None:
        """A nested FAILED Result with a transient cause, unwrapped: the outer Retry runs it all again."""
        attempts: list[str] = []
        buses: list[CommandBus] = []

        class Serialization(Exception):
            sqlstate = "40001"

        class Handler:
            async def handle(self, command: AddItem, context: Context) -> str:
                attempts.append(command.name)
                if command.name == "inner":
                    if attempts.count("inner") == 1:
                        raise Serialization
                    await database.session.execute(insert(items).values(name="inner"))
                    return "inner"
                await database.session.execute(insert(items).values(name=command.name))
                (await buses[0].execute(AddItem("inner"), context=context.child())).unwrap()
                return command.name

        retry = Retry(RetryPolicy(max_attempts=3, delay=0))
        buses.append(CommandBus({AddItem: Handler()}, [retry, Transaction(database)]))
        result = await buses[0].execute(AddItem("outer"))
        assert result.is_success
        assert attempts == ["outer", "inner", "outer", "inner"]
        assert sorted(await item_names(database)) == ["inner", "outer"]

    async def test_a_nested_failure_that_is_not_transient_is_not_retried(self, database: Database) -> None:
        """A nested FAILED Result caused by a bug, unwrapped: one attempt, FAILED, nothing written."""
        attempts: list[str] = []
        buses: list[CommandBus] = []

        class Handler:
            async def handle(self, command: AddItem, context: Context) -> str:
                attempts.append(command.name)
                if command.name == "inner":
                    raise KeyError("a bug")
                await database.session.execute(insert(items).values(name=command.name))
                (await buses[0].execute(AddItem("inner"), context=context.child())).unwrap()
                return command.name

        retry = Retry(RetryPolicy(max_attempts=3, delay=0))
        buses.append(CommandBus({AddItem: Handler()}, [retry, Transaction(database)]))
        result = await buses[0].execute(AddItem("outer"))
        assert result.status is OperationStatus.FAILED
        assert attempts == ["outer", "inner"]
        assert await item_names(database) == []

    async def test_a_timeout_during_commit_lets_the_commit_finish(self, database: Database) -> None:
        """Timeout firing while COMMIT runs: the commit completes and the caller gets its outcome."""

        def slow_commit(_connection: Any) -> None:
            await_(asyncio.sleep(0.3))

        class Add:
            async def handle(self, command: AddItem, context: Context) -> str:
                await database.session.execute(insert(items).values(name=command.name))
                return command.name

        bus = CommandBus({AddItem: Add()}, [Timeout(default=0.1), Transaction(database)])
        event.listen(database.engine.sync_engine, "commit", slow_commit)
        try:
            result = await bus.execute(AddItem("slow-commit"))
        finally:
            event.remove(database.engine.sync_engine, "commit", slow_commit)
        assert result.status is OperationStatus.SUCCESS
        assert await item_names(database) == ["slow-commit"]
        assert database.engine.pool.checkedout() == 0

    async def test_a_timed_out_command_leaves_no_write_and_frees_the_write_lock(
        self, database: Database
    ) -> None:
        """A handler that writes then outlives its Timeout: TIMEOUT, no row, and the next command commits."""

        class WriteThenWait:
            async def handle(self, command: AddItem, context: Context) -> str:
                await database.session.execute(insert(items).values(name=command.name))
                if command.name == "hung":
                    await asyncio.Event().wait()  # until the Timeout cancels it
                return command.name

        bus = CommandBus({AddItem: WriteThenWait()}, [Timeout(default=0.2), Transaction(database)])
        timed_out = await bus.execute(AddItem("hung"))
        assert timed_out.status is OperationStatus.TIMEOUT
        assert await item_names(database) == []
        assert database.engine.pool.checkedout() == 0
        assert (await bus.execute(AddItem("next"))).is_success
        assert await item_names(database) == ["next"]

    async def test_sqlite_busy_is_retried(self, tmp_path: Path) -> None:
        """A write lock held elsewhere fails the first attempt ('database is locked'); Retry runs it again."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}"
        database = Database(url, sqlite_busy_timeout=0.05)
        blocker = Database(url)
        await create_tables(database)
        lock = await blocker.engine.connect()
        await lock.begin()  # BEGIN IMMEDIATE: holds the write lock
        attempts: list[int] = []

        async def release_then_sleep(_seconds: float) -> None:
            await lock.commit()

        class Add:
            async def handle(self, command: AddItem, context: Context) -> str:
                attempts.append(1)
                await database.session.execute(insert(items).values(name=command.name))
                return command.name

        retry = Retry(RetryPolicy(max_attempts=3), sleep=release_then_sleep)
        bus = CommandBus({AddItem: Add()}, [retry, Transaction(database)])
        try:
            result = await bus.execute(AddItem("after-busy"))
        finally:
            await lock.close()
            await blocker.dispose()
        try:
            assert result.status is OperationStatus.SUCCESS
            assert len(attempts) == 2
            assert await item_names(database) == ["after-busy"]
        finally:
            await database.dispose()


class TestTransactionBehaviour:
    """The behaviour object itself: its settings, its checks, and a fake call_next."""

    def test_it_declares_its_stage_inside_retry(self, database: Database) -> None:
        """It sits at Stage.TRANSACTION, inside Retry's stage, and stays in every command's pipeline."""
        transaction = Transaction(database)
        assert transaction.stage is Stage.TRANSACTION
        assert Stage.RETRY < Stage.TRANSACTION

        class Handler:
            async def handle(self, command: Other, context: Context) -> None:
                return None

        bus = CommandBus({Other: Handler()}, [Retry(), transaction])
        assert bus.behaviours_for(Other)[-1] is transaction

    def test_a_query_bus_refuses_it(self, database: Database) -> None:
        """Queries are not run in a write transaction."""

        class Handler:
            async def handle(self, query: Look, context: Context) -> None:
                return None

        with pytest.raises(ConfigurationError, match="Command"):
            QueryBus({Look: Handler()}, [Transaction(database)])

    def test_retry_inside_transaction_is_refused(self, database: Database) -> None:
        """The bus refuses Retry listed after (inside) Transaction."""

        class Handler:
            async def handle(self, command: Other, context: Context) -> None:
                return None

        with pytest.raises(ConfigurationError, match="outside"):
            CommandBus({Other: Handler()}, [Transaction(database), Retry()])

    @pytest.mark.parametrize("level", ["READ UNCOMMITTED", "SNAPSHOT", 3])
    def test_levels_sqlite_cannot_honour_are_refused_when_built(self, database: Database, level: Any) -> None:
        """An isolation level SQLite cannot give raises ConfigurationError in the constructor."""
        with pytest.raises(ConfigurationError, match="isolation"):
            Transaction(database, isolation={Other: level})
        with pytest.raises(ConfigurationError, match="isolation"):
            Transaction(database, default_isolation=level)

    def test_isolation_keys_must_be_commands(self, database: Database) -> None:
        """A query type (or anything else) as an isolation key is refused."""
        with pytest.raises(ConfigurationError, match="Command subclasses"):
            Transaction(database, isolation={Look: "SERIALIZABLE"})

    def test_it_needs_a_database(self) -> None:
        """Anything but a Database is refused at once."""
        with pytest.raises(ConfigurationError, match="Database"):
            Transaction("sqlite://")  # type: ignore[arg-type]

    def test_describe_and_repr_give_the_isolation(self, database: Database) -> None:
        """describe() says which level a type runs at; levels are written canonically."""
        transaction = Transaction(
            database, isolation={Increment: "serializable"}, default_isolation="READ_COMMITTED"
        )
        assert transaction.describe(Increment)["isolation"] == "SERIALIZABLE"
        assert transaction.describe(Other)["isolation"] == "READ COMMITTED"
        assert Transaction(database).describe(Other)["isolation"] == "database default"
        assert "SERIALIZABLE" in repr(transaction)

    async def test_direct_call_commits_a_success(self, database: Database) -> None:
        """With a fake call_next that writes and succeeds, the row is committed."""

        async def call_next(message: Any, context: Context) -> Result[Any]:
            await database.session.execute(insert(items).values(name="direct"))
            return success()

        result = await Transaction(database)(AddItem("direct"), Context(), call_next)
        assert result.is_success
        assert await item_names(database) == ["direct"]

    async def test_direct_call_rolls_back_a_failure_result(self, database: Database) -> None:
        """With a fake call_next that writes and returns a failure, nothing is committed."""

        async def call_next(message: Any, context: Context) -> Result[Any]:
            await database.session.execute(insert(items).values(name="direct"))
            return Result.failure(OperationStatus.VALIDATION_ERROR, {"name": "bad"})

        result = await Transaction(database)(AddItem("direct"), Context(), call_next)
        assert result.status is OperationStatus.VALIDATION_ERROR
        assert await item_names(database) == []

    async def test_direct_call_rolls_back_and_reraises(self, database: Database) -> None:
        """An exception from call_next rolls back and passes through unchanged."""

        async def call_next(message: Any, context: Context) -> Result[Any]:
            await database.session.execute(insert(items).values(name="direct"))
            raise KeyError("boom")

        with pytest.raises(KeyError):
            await Transaction(database)(AddItem("direct"), Context(), call_next)
        assert await item_names(database) == []
        assert database.engine.pool.checkedout() == 0

    async def test_the_session_is_gone_after_the_command(self, database: Database) -> None:
        """Outside the command, database.session raises a NoActiveSessionError that says how to fix it."""

        async def call_next(message: Any, context: Context) -> Result[Any]:
            assert database.in_transaction()
            return success(database.session)

        await Transaction(database)(Other(), Context(), call_next)
        with pytest.raises(NoActiveSessionError, match=r"Transaction behaviour.*read_session"):
            _ = database.session
