"""Transaction and Database on the real PostgreSQL server: isolation, retries, timeouts, the pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
import structlog
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cqrskit import Command, CommandBus, ConfigurationError, Context, OperationStatus
from cqrskit.behaviours import Retry, RetryPolicy, Timeout
from cqrskit.scope import defer_until_commit
from cqrskit.sqlalchemy import Database, Transaction

pytestmark = pytest.mark.postgres

metadata = MetaData()
entries = Table(
    "entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", Integer, nullable=False),
    Column("author", String(40), nullable=False),
)
accounts = Table(
    "accounts",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("email", String(80), nullable=False, unique=True),
)
marks = Table(
    "marks",
    metadata,
    Column("label", String(40), primary_key=True),
    Column("pending", Boolean, nullable=False),
)


@attrs.frozen
class AppendEntry(Command[int]):
    """Read the highest seq, then insert seq + 1: write skew without SERIALIZABLE."""

    author: str


@attrs.frozen
class Register(Command[str]):
    """Insert an account; its email is unique."""

    name: str
    email: str


@attrs.frozen
class Probe(Command[Any]):
    """Run whatever the test's handler does."""

    label: str = ""


class Server:
    """A side connection (autocommit) for watching and poking the server while commands run."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return result.scalar() if result.returns_rows else None

    async def poll(self, sql: str, until: Callable[[Any], bool], seconds: float = 5.0, **params: Any) -> Any:
        """Run `sql` until `until(value)` holds or `seconds` pass; return the last value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            value = await self.scalar(sql, **params)
            if until(value) or loop.time() > deadline:
                return value
            await asyncio.sleep(0.05)


@pytest.fixture
async def server(postgres_url: str) -> AsyncIterator[Server]:
    engine = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT", pool_size=2)
    try:
        yield Server(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def database(postgres_url: str, unique_name: str, server: Server) -> AsyncIterator[Database]:
    """A Database whose connections work in a schema of this test's own, dropped afterwards."""
    await server.scalar(f'CREATE SCHEMA "{unique_name}"')
    database: Database | None = None
    try:
        database = Database(
            postgres_url,
            engine_options={
                "connect_args": {
                    "server_settings": {"search_path": unique_name, "application_name": unique_name}
                },
                "pool_size": 1,
                "max_overflow": 9,
            },
        )
        async with database.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        yield database
    finally:
        if database is not None:
            await database.dispose()
        await server.scalar(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')


def probe_bus(
    database: Database, handle: Callable[[Probe, Context], Awaitable[Any]], *outer: object, **options: Any
) -> CommandBus:
    class Handler:
        async def handle(self, command: Probe, context: Context) -> Any:
            return await handle(command, context)

    return CommandBus({Probe: Handler()}, [*outer, Transaction(database, **options)])


class AppendEntryHandler:
    """Reads max(seq), waits until its partner has read too (first attempt only), inserts max + 1."""

    def __init__(self, database: Database, partners: asyncio.Barrier) -> None:
        self._database = database
        self._partners = partners
        self.attempts: dict[str, int] = {}

    async def handle(self, command: AppendEntry, context: Context) -> int:
        attempt = self.attempts[command.author] = self.attempts.get(command.author, 0) + 1
        session = self._database.session
        highest = (await session.execute(text("SELECT coalesce(max(seq), 0) FROM entries"))).scalar_one()
        if attempt == 1:
            await asyncio.wait_for(self._partners.wait(), timeout=10)
        await session.execute(insert(entries).values(seq=highest + 1, author=command.author))
        return int(highest + 1)


class TestSerializable:
    """Write skew under SERIALIZABLE: Retry re-runs the loser; without Retry the loser fails cleanly."""

    async def test_with_retry_each_command_commits_exactly_once(self, database: Database) -> None:
        """Both commands succeed, one after a retry; the sequence has no duplicate and each author once."""
        handler = AppendEntryHandler(database, asyncio.Barrier(2))
        bus = CommandBus(
            {AppendEntry: handler},
            [
                Retry(RetryPolicy(max_attempts=5, delay=0.01)),
                Transaction(database, isolation={AppendEntry: "SERIALIZABLE"}),
            ],
        )
        first, second = await asyncio.gather(bus.execute(AppendEntry("a")), bus.execute(AppendEntry("b")))
        assert (first.status, second.status) == (OperationStatus.SUCCESS, OperationStatus.SUCCESS)
        assert sorted([first.data, second.data]) == [1, 2]
        assert sorted(handler.attempts.values()) == [1, 2]
        async with database.read_session() as session:
            rows = (
                await session.execute(select(entries.c.seq, entries.c.author).order_by(entries.c.seq))
            ).all()
        assert [row.seq for row in rows] == [1, 2]
        assert sorted(row.author for row in rows) == ["a", "b"]
        assert database.engine.pool.checkedout() == 0

    async def test_without_retry_one_fails_and_leaves_no_write(self, database: Database) -> None:
        """One command succeeds, the other is FAILED (serialization failure) and its row is not there."""
        handler = AppendEntryHandler(database, asyncio.Barrier(2))
        bus = CommandBus(
            {AppendEntry: handler}, [Transaction(database, isolation={AppendEntry: "SERIALIZABLE"})]
        )
        results = await asyncio.gather(bus.execute(AppendEntry("a")), bus.execute(AppendEntry("b")))
        statuses = sorted(r.status.value for r in results)
        assert statuses == sorted([OperationStatus.SUCCESS.value, OperationStatus.FAILED.value])
        winner = next(r for r in results if r.is_success)
        async with database.read_session() as session:
            rows = (await session.execute(select(entries.c.seq))).scalars().all()
        assert rows == [winner.data]

    async def test_read_committed_lets_the_write_skew_through(self, database: Database) -> None:
        """The control: at READ COMMITTED both commands insert the same seq (why SERIALIZABLE is needed)."""
        handler = AppendEntryHandler(database, asyncio.Barrier(2))
        bus = CommandBus({AppendEntry: handler}, [Transaction(database, default_isolation="READ COMMITTED")])
        results = await asyncio.gather(bus.execute(AppendEntry("a")), bus.execute(AppendEntry("b")))
        assert [r.data for r in results] == [1, 1]


class TestIsolation:
    """The configured level holds inside the handler, and the pooled connection goes back to its default."""

    @pytest.mark.parametrize("level", ["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED"])
    async def test_observed_inside_then_back_to_default(self, database: Database, level: str) -> None:
        """SHOW transaction_isolation gives the level; the next transaction on the same connection is back."""
        seen: list[tuple[str, int]] = []

        async def show(command: Probe, context: Context) -> None:
            session = database.session
            isolation = (await session.execute(text("SHOW transaction_isolation"))).scalar_one()
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            seen.append((isolation, pid))

        configured = probe_bus(database, show, isolation={Probe: level})
        plain = probe_bus(database, show)
        assert (await configured.execute(Probe())).is_success
        assert (await plain.execute(Probe())).is_success
        (inside, first_pid), (after, second_pid) = seen
        assert inside == level.lower()
        assert after == "read committed"
        assert first_pid == second_pid  # the same pooled connection: its level was reset

    async def test_a_nested_command_cannot_ask_for_more_than_the_outer_transaction(
        self, database: Database
    ) -> None:
        """A SERIALIZABLE command dispatched inside a READ COMMITTED one is a wiring mistake: it raises."""
        inner_bus: list[CommandBus] = []

        async def outer(command: Probe, context: Context) -> None:
            if command.label == "outer":
                await inner_bus[0].execute(Probe("inner"), context=context.child())

        bus = probe_bus(database, outer, default_isolation="READ COMMITTED", isolation={})
        inner_bus.append(probe_bus(database, outer, default_isolation="SERIALIZABLE"))
        with pytest.raises(ConfigurationError, match="SERIALIZABLE"):
            await bus.execute(Probe("outer"))


class TestFailures:
    """Timeouts, unique violations and a connection killed at COMMIT."""

    async def test_a_timeout_cancels_the_query_on_the_server(
        self, database: Database, server: Server, unique_name: str
    ) -> None:
        """Timeout around pg_sleep: TIMEOUT, no query left running, no partial write, connection usable."""

        async def sleep(command: Probe, context: Context) -> None:
            await database.session.execute(insert(marks).values(label="before-sleep", pending=False))
            await database.session.execute(text(f"SELECT pg_sleep(30) /* {unique_name} */"))

        running = (
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE :pattern AND state = 'active' "
            "AND pid <> pg_backend_pid()"
        )
        pattern = f"%pg_sleep(30) /* {unique_name}%"
        # Watch the query start, so the check for its end below cannot pass by matching nothing.
        watcher = asyncio.create_task(server.poll(running, until=lambda count: count == 1, pattern=pattern))
        bus = probe_bus(database, sleep, Timeout(default=0.5))
        result = await bus.execute(Probe())
        assert result.status is OperationStatus.TIMEOUT
        assert await watcher == 1
        leftover = await server.poll(running, until=lambda count: count == 0, pattern=pattern)
        assert leftover == 0
        assert database.engine.pool.checkedout() == 0
        assert await server.scalar(f'SELECT count(*) FROM "{unique_name}".marks') == 0

        async def still_works(command: Probe, context: Context) -> int:
            return int((await database.session.execute(text("SELECT 1"))).scalar_one())

        assert (await probe_bus(database, still_works).execute(Probe())).data == 1

    async def test_a_statement_timeout_is_not_retried(self, database: Database) -> None:
        """SQLSTATE 57014 (statement_timeout) is FAILED after one attempt, even with Retry outside."""
        attempts: list[int] = []

        async def slow(command: Probe, context: Context) -> None:
            attempts.append(1)
            session = database.session
            await session.execute(text("SET LOCAL statement_timeout = 50"))
            await session.execute(text("SELECT pg_sleep(2)"))

        result = await probe_bus(database, slow, Retry(RetryPolicy(max_attempts=3, delay=0))).execute(Probe())
        assert result.status is OperationStatus.FAILED
        assert attempts == [1]

    async def test_a_pool_checkout_timeout_is_not_retried(self, postgres_url: str, unique_name: str) -> None:
        """With the pool exhausted, the checkout timeout is FAILED after one attempt."""
        database = Database(
            postgres_url, engine_options={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.1}
        )
        attempts: list[int] = []

        async def needs_a_connection(command: Probe, context: Context) -> None:
            attempts.append(1)
            await database.session.execute(text("SELECT 1"))

        bus = probe_bus(database, needs_a_connection, Retry(RetryPolicy(max_attempts=3, delay=0)))
        try:
            async with database.engine.connect() as hog:
                await hog.execute(text("SELECT 1"))
                result = await bus.execute(Probe())
        finally:
            await database.dispose()
        assert result.status is OperationStatus.FAILED
        assert attempts == [1]

    async def test_a_unique_violation_is_conflict(self, database: Database) -> None:
        """A second account with the same email returns CONFLICT and writes nothing."""

        class RegisterHandler:
            async def handle(self, command: Register, context: Context) -> str:
                await database.session.execute(
                    insert(accounts).values(name=command.name, email=command.email)
                )
                return command.name

        bus = CommandBus({Register: RegisterHandler()}, [Retry(), Transaction(database)])
        assert (await bus.execute(Register("ann", "a@example.com"))).is_success
        result = await bus.execute(Register("bob", "a@example.com"))
        assert result.status is OperationStatus.CONFLICT
        async with database.read_session() as session:
            assert (await session.execute(select(accounts.c.name))).scalars().all() == ["ann"]

    async def test_a_unique_violation_found_at_commit_is_conflict(
        self, database: Database, server: Server, unique_name: str
    ) -> None:
        """A deferred unique constraint fails at COMMIT: CONFLICT (not FAILED), one attempt, no row."""
        await server.scalar(
            f'ALTER TABLE "{unique_name}".entries ADD CONSTRAINT entries_seq_unique '
            "UNIQUE (seq) DEFERRABLE INITIALLY DEFERRED"
        )
        attempts: list[int] = []

        async def twice(command: Probe, context: Context) -> None:
            attempts.append(1)
            for author in ("a", "b"):
                await database.session.execute(insert(entries).values(seq=7, author=author))

        bus = probe_bus(database, twice, Retry(RetryPolicy(max_attempts=3, delay=0)))
        result = await bus.execute(Probe())
        assert result.status is OperationStatus.CONFLICT
        assert attempts == [1]
        assert database.engine.pool.checkedout() == 0
        assert await server.scalar(f'SELECT count(*) FROM "{unique_name}".entries') == 0

    async def test_a_connection_killed_just_before_commit_is_not_retried(
        self, database: Database, server: Server
    ) -> None:
        """The handler has its backend terminated just before COMMIT: UNAVAILABLE, one attempt, no retry."""
        attempts: list[int] = []

        async def doomed(command: Probe, context: Context) -> None:
            attempts.append(1)
            session = database.session
            await session.execute(insert(marks).values(label="doomed", pending=False))
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            assert await server.scalar("SELECT pg_terminate_backend(:pid)", pid=pid)
            gone = await server.poll(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", until=lambda n: n == 0, pid=pid
            )
            assert gone == 0

        bus = probe_bus(database, doomed, Retry(RetryPolicy(max_attempts=3, delay=0)))
        result = await bus.execute(Probe())
        assert result.status is OperationStatus.UNAVAILABLE
        assert "may or may not have committed" in result.errors["detail"]
        assert attempts == [1]
        assert database.engine.pool.checkedout() == 0
        async with database.read_session() as session:
            assert (await session.execute(select(marks.c.label))).scalars().all() == []


class TestConcurrency:
    """Many commands through a small pool: separate sessions, no dirty reads, no leaked connection."""

    async def test_two_hundred_commands_never_see_each_others_uncommitted_rows(
        self, database: Database
    ) -> None:
        """Each command writes a pending row and clears it before commit; nobody ever sees a pending row."""
        sessions: list[object] = []
        dirty: list[str] = []

        async def write(command: Probe, context: Context) -> None:
            session = database.session
            sessions.append(session)
            await session.execute(insert(marks).values(label=command.label, pending=True))
            await asyncio.sleep(0)
            others = await session.execute(
                select(marks.c.label).where(marks.c.pending.is_(True), marks.c.label != command.label)
            )
            dirty.extend(others.scalars())
            await session.execute(update(marks).where(marks.c.label == command.label).values(pending=False))

        bus = probe_bus(database, write)
        results = await asyncio.gather(*(bus.execute(Probe(f"t{i}")) for i in range(200)))
        assert {r.status for r in results} == {OperationStatus.SUCCESS}
        assert dirty == []
        assert len({id(s) for s in sessions}) == 200
        assert database.engine.pool.checkedout() == 0
        async with database.read_session() as session:
            assert len((await session.execute(select(marks.c.label))).scalars().all()) == 200


class TestCommitOutcome:
    """Once COMMIT was sent, the command's outcome is the commit's, even when a deadline or a cancel comes."""

    @pytest.fixture
    async def slow_commit(self, database: Database, server: Server, unique_name: str) -> float:
        """Make every COMMIT that inserted into marks take about a second (a deferred trigger sleeps)."""
        seconds = 1.0
        await server.scalar(
            f'CREATE FUNCTION "{unique_name}".slow_commit() RETURNS trigger LANGUAGE plpgsql AS '
            f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$"
        )
        await server.scalar(
            f'CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON "{unique_name}".marks '
            f'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "{unique_name}".slow_commit()'
        )
        return seconds

    @staticmethod
    def marking_bus(database: Database, after_commit: list[str], *outer: object) -> CommandBus:
        async def mark(command: Probe, context: Context) -> str:
            await database.session.execute(insert(marks).values(label=command.label, pending=False))

            async def note() -> None:
                after_commit.append(command.label)

            defer_until_commit(note)
            return command.label

        return probe_bus(database, mark, *outer)

    async def test_a_deadline_during_commit_gets_the_commits_outcome(
        self, database: Database, server: Server, slow_commit: float, unique_name: str
    ) -> None:
        """A Timeout that expires while COMMIT runs: SUCCESS, the row is there, after-commit work ran."""
        after_commit: list[str] = []
        bus = self.marking_bus(database, after_commit, Timeout(default=slow_commit / 4))
        result = await bus.execute(Probe("deadline"))
        assert result.status is OperationStatus.SUCCESS
        assert (
            await server.scalar(f"SELECT count(*) FROM \"{unique_name}\".marks WHERE label = 'deadline'") == 1
        )
        assert after_commit == ["deadline"]
        assert database.engine.pool.checkedout() == 0

    async def test_a_connection_killed_during_commit_is_not_retried(
        self, database: Database, server: Server, slow_commit: float, unique_name: str
    ) -> None:
        """pg_terminate_backend while COMMIT runs: UNAVAILABLE after one attempt, no after-commit work."""
        after_commit: list[str] = []
        attempts: list[str] = []

        async def mark(command: Probe, context: Context) -> str:
            attempts.append(command.label)
            await database.session.execute(insert(marks).values(label=command.label, pending=False))

            async def note() -> None:
                after_commit.append(command.label)

            defer_until_commit(note)
            return command.label

        bus = probe_bus(database, mark, Retry(RetryPolicy(max_attempts=3, delay=0)))
        committing = (
            "SELECT pid FROM pg_stat_activity WHERE application_name = :name "
            "AND state = 'active' AND query ILIKE 'COMMIT%'"
        )
        with structlog.testing.capture_logs() as logs:
            dispatch = asyncio.create_task(bus.execute(Probe("killed")))
            pid = await server.poll(committing, until=lambda found: found is not None, name=unique_name)
            assert pid is not None
            assert await server.scalar("SELECT pg_terminate_backend(:pid)", pid=pid)
            result = await asyncio.wait_for(dispatch, timeout=10)
        assert result.status is OperationStatus.UNAVAILABLE
        assert attempts == ["killed"]
        assert after_commit == []
        assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == [
            "commit_outcome_unknown"
        ]
        assert database.engine.pool.checkedout() == 0
        assert (
            await server.scalar(f"SELECT count(*) FROM \"{unique_name}\".marks WHERE label = 'killed'") == 0
        )

    async def test_a_cancel_during_commit_propagates_after_the_committed_work(
        self, database: Database, server: Server, slow_commit: float, unique_name: str
    ) -> None:
        """Cancelling the caller while COMMIT runs: the commit lands, its work runs, then CancelledError."""
        after_commit: list[str] = []
        bus = self.marking_bus(database, after_commit)
        dispatch = asyncio.create_task(bus.execute(Probe("cancelled")))
        committing = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
            "AND state = 'active' AND query ILIKE 'COMMIT%'"
        )
        assert await server.poll(committing, until=lambda count: count == 1, name=unique_name) == 1
        dispatch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dispatch
        assert (
            await server.scalar(f"SELECT count(*) FROM \"{unique_name}\".marks WHERE label = 'cancelled'")
            == 1
        )
        assert after_commit == ["cancelled"]
        assert database.engine.pool.checkedout() == 0
