"""Database on real SQLite files: engines, sessions, transactions, savepoints, cancellation."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import containers, providers
from sqlalchemy import event, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.util import await_

from cqrskit import ConfigurationError, ConflictError
from cqrskit.scope import current_transaction, defer_until_commit
from cqrskit.sqlalchemy import Database, NoActiveSessionError
from tests.database.support import Item, create_tables, item_names, items

ROOT = Path(__file__).resolve().parents[2]


class TestDatabase:
    """Building a Database and what it sets up."""

    async def test_without_a_url_it_uses_a_private_sqlite_file_removed_by_dispose(self) -> None:
        """Database() is a working SQLite database in a temporary directory, deleted on dispose."""
        database = Database()
        path = Path(database.engine.url.database or "")
        await create_tables(database)
        assert path.is_file()  # noqa: ASYNC240 - a test's one stat call
        assert database.dialect_name == "sqlite"
        await database.dispose()
        assert not path.parent.exists()

    async def test_an_in_memory_url_gets_a_pool_of_separate_connections(self) -> None:
        """sqlite+aiosqlite:// becomes a private file, so concurrent transactions never share a connection."""
        database = Database("sqlite+aiosqlite://")
        await create_tables(database)

        async def add(name: str) -> None:
            async with database.transaction() as session:
                await session.execute(insert(items).values(name=name))
                await asyncio.sleep(0)

        try:
            await asyncio.gather(*(add(f"n{i}") for i in range(5)))
            assert len(await item_names(database)) == 5
        finally:
            await database.dispose()

    def test_a_driverless_url_gets_the_async_driver(self, tmp_path: Path) -> None:
        """sqlite:/// means aiosqlite and postgresql:// means asyncpg."""
        database = Database(f"sqlite:///{tmp_path / 'x.db'}")
        assert database.engine.url.drivername == "sqlite+aiosqlite"
        assert "x.db" in repr(database)

    def test_url_and_engine_together_are_refused(self, database: Database) -> None:
        """Give one or the other."""
        with pytest.raises(ConfigurationError, match="not both"):
            Database("sqlite+aiosqlite://", engine=database.engine)

    async def test_an_engine_you_pass_is_used_and_not_disposed(self, tmp_path: Path) -> None:
        """Database(engine=...) uses it (with the SQLite hooks) and leaves disposing it to you."""
        owner = Database(f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}")
        await create_tables(owner)
        borrowed = Database(engine=owner.engine)
        async with borrowed.transaction() as session:
            await session.execute(insert(items).values(name="via-borrowed"))
        await borrowed.dispose()
        assert await item_names(owner) == ["via-borrowed"]
        await owner.dispose()

    async def test_sqlite_connections_use_wal_and_a_busy_timeout(self, database: Database) -> None:
        """Every connection is in WAL mode and waits for locks instead of failing at once."""
        async with database.read_session() as session:
            assert (await session.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await session.execute(text("PRAGMA busy_timeout"))).scalar_one() == 5000

    async def test_read_session_reads_while_a_write_transaction_holds_the_lock(
        self, database: Database
    ) -> None:
        """Readers use a deferred BEGIN: they are not queued behind an open write transaction."""
        async with database.transaction() as session:
            await session.execute(insert(items).values(name="uncommitted"))
            assert await asyncio.wait_for(item_names(database), timeout=2) == []
        assert await item_names(database) == ["uncommitted"]

    async def test_read_url_gives_read_sessions_their_own_engine(self, tmp_path: Path) -> None:
        """With read_url, read_session() reads from that database, commands write to the other."""
        read_db = Database(f"sqlite+aiosqlite:///{tmp_path / 'read.db'}")
        await create_tables(read_db)
        async with read_db.transaction() as session:
            await session.execute(insert(items).values(name="in-read-store"))
        await read_db.dispose()
        database = Database(
            f"sqlite+aiosqlite:///{tmp_path / 'write.db'}",
            read_url=f"sqlite+aiosqlite:///{tmp_path / 'read.db'}",
        )
        try:
            assert database.read_engine is not database.engine
            assert await item_names(database) == ["in-read-store"]
            assert "read_url" in repr(database)
        finally:
            await database.dispose()

    async def test_as_a_container_resource_it_is_disposed_at_shutdown(self, tmp_path: Path) -> None:
        """A providers.Resource that yields a Database and awaits dispose() cleans up on shutdown."""

        async def open_database(url: str) -> AsyncIterator[Database]:
            database = Database(url)
            yield database
            await database.dispose()

        class Resources(containers.DeclarativeContainer):
            database = providers.Resource(open_database, url=f"sqlite+aiosqlite:///{tmp_path / 'res.db'}")

        container = Resources()
        database = await container.database()  # type: ignore[misc]
        await create_tables(database)
        async with database.transaction() as session:
            await session.execute(insert(items).values(name="r"))
        assert database.engine.pool.checkedout() == 0
        await container.shutdown_resources()  # type: ignore[misc]
        assert database.engine.pool.checkedin() == 0

    def test_missing_sqlalchemy_gives_an_install_hint(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Importing cqrskit.sqlalchemy without SQLAlchemy names the extra to install."""
        for name in list(sys.modules):
            if name == "cqrskit.sqlalchemy" or name.startswith("cqrskit.sqlalchemy."):
                monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "sqlalchemy.ext.asyncio", None)
        with pytest.raises(ImportError, match=r"cqrskit\[sqlalchemy\]"):
            importlib.import_module("cqrskit.sqlalchemy")

    def test_the_core_behaviours_and_caching_import_without_the_optional_extras(self) -> None:
        """Without SQLAlchemy or aiocache the core, behaviours and caching import; sqlalchemy says why not."""
        script = (
            "import sys\n"
            "for name in ('sqlalchemy', 'aiocache', 'redis', 'asyncpg', 'aiosqlite'):\n"
            "    sys.modules[name] = None\n"
            "import cqrskit.behaviours, cqrskit.caching, cqrskit.testing\n"
            "from cqrskit.caching import CacheInvalidation, CachePolicy, QueryCache\n"
            "try:\n"
            "    import cqrskit.sqlalchemy\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
        )
        done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "cqrskit[sqlalchemy]" in done.stdout


class TestSession:
    """database.session: context-local, and a clear error outside a transaction."""

    def test_outside_a_transaction_it_says_how_to_fix_it(self, database: Database) -> None:
        """The error names the Transaction behaviour and read_session()."""
        with pytest.raises(NoActiveSessionError) as raised:
            _ = database.session
        assert "Transaction" in str(raised.value)
        assert "read_session()" in str(raised.value)
        assert isinstance(raised.value, ConfigurationError)

    async def test_it_is_the_transactions_session(self, database: Database) -> None:
        """Inside a transaction, database.session is the session the block yields."""
        async with database.transaction() as session:
            assert database.session is session
            assert current_transaction() is not None
        assert current_transaction() is None
        assert not database.in_transaction()

    async def test_concurrent_tasks_have_their_own_sessions(self, database: Database) -> None:
        """Two tasks that open transactions at once never see each other's session."""
        ready = asyncio.Barrier(2)

        async def open_one() -> object:
            async with database.transaction() as session:
                await ready.wait()
                assert database.session is session
                return session

        first, second = await asyncio.gather(open_one(), open_one())
        assert first is not second


class TestTransactionBlock:
    """database.transaction(): commit, rollback, savepoints, after-commit work, cancellation."""

    async def test_commit_then_after_commit_work_outside_the_transaction(self, database: Database) -> None:
        """Deferred work runs after COMMIT, when no transaction is open any more."""
        seen: list[object] = []

        async def work() -> None:
            seen.append((database.in_transaction(), await item_names(database)))

        async with database.transaction() as session:
            await session.execute(insert(items).values(name="a"))
            assert defer_until_commit(work)
            assert seen == []
        assert seen == [(False, ["a"])]

    async def test_an_exception_rolls_back_and_drops_the_work(self, database: Database) -> None:
        """The write is gone, the work never runs, the exception passes through."""
        seen: list[str] = []

        async def work() -> None:
            seen.append("ran")

        async def write_then_raise() -> None:
            async with database.transaction() as session:
                await session.execute(insert(items).values(name="a"))
                defer_until_commit(work)
                raise LookupError

        with pytest.raises(LookupError):
            await write_then_raise()
        assert await item_names(database) == []
        assert seen == []
        assert database.engine.pool.checkedout() == 0

    async def test_a_failing_savepoint_rolls_back_only_its_part(self, database: Database) -> None:
        """A nested block that fails, caught by the outer code, loses its write and its work only."""
        seen: list[str] = []

        async def note(name: str) -> None:
            seen.append(name)

        async def inner_part(outer: object) -> None:
            async with database.transaction() as inner:
                assert inner is outer
                await inner.execute(insert(items).values(name="inner"))
                defer_until_commit(lambda: note("inner"))
                raise RuntimeError

        async with database.transaction() as session:
            await session.execute(insert(items).values(name="outer"))
            defer_until_commit(lambda: note("outer"))
            with pytest.raises(RuntimeError):
                await inner_part(session)
            async with database.transaction():
                defer_until_commit(lambda: note("kept"))
                assert seen == []
        assert await item_names(database) == ["outer"]
        assert seen == ["outer", "kept"]

    async def test_rollback_only_rolls_back_without_an_exception(self, database: Database) -> None:
        """A block with rollback_only set rolls back: no row, no deferred work; a savepoint alone."""
        seen: list[str] = []

        async def note() -> None:
            seen.append("ran")

        block = database.transaction()
        async with block as session:
            await session.execute(insert(items).values(name="discarded"))
            defer_until_commit(note)
            block.rollback_only = True
        assert await item_names(database) == []
        assert seen == []

        async with database.transaction() as session:
            await session.execute(insert(items).values(name="outer"))
            inner = database.transaction()
            async with inner as same:
                await same.execute(insert(items).values(name="inner"))
                inner.rollback_only = True
        assert await item_names(database) == ["outer"]
        assert database.engine.pool.checkedout() == 0

    async def test_a_unique_violation_becomes_conflict(self, database: Database) -> None:
        """The IntegrityError of a duplicate key reaches the caller as ConflictError, chained to it."""

        async def insert_twice() -> None:
            async with database.transaction() as session:
                await session.execute(insert(items).values(name="x"))
                await session.execute(insert(items).values(name="x"))

        with pytest.raises(ConflictError) as raised:
            await insert_twice()
        assert isinstance(raised.value.__cause__, IntegrityError)
        assert "INSERT" not in str(raised.value)

    async def test_a_unique_violation_found_at_flush_becomes_conflict(self, database: Database) -> None:
        """An ORM-style pending insert that fails when the block flushes it is a ConflictError too."""
        async with database.transaction() as session:
            await session.execute(insert(items).values(name="x"))

        async def add_duplicate() -> None:
            async with database.transaction() as session:
                session.add(Item(name="x"))

        with pytest.raises(ConflictError):
            await add_duplicate()
        assert await item_names(database) == ["x"]

    async def test_a_savepoint_cannot_ask_for_more_isolation_than_its_transaction(
        self, tmp_path: Path
    ) -> None:
        """On SQLite every transaction is serializable, so a savepoint may ask for any level it honours."""
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'iso.db'}")
        try:
            async with database.transaction(), database.transaction("SERIALIZABLE"):
                pass
            with pytest.raises(ConfigurationError, match="isolation"):
                database.transaction("READ UNCOMMITTED")
        finally:
            await database.dispose()

    async def test_commit_finishes_when_the_task_is_cancelled_during_it(self, database: Database) -> None:
        """Cancelling while COMMIT runs waits for it, keeps its effect, then raises CancelledError."""
        in_commit = asyncio.Event()

        def slow_commit(_connection: Any) -> None:
            in_commit.set()
            await_(asyncio.sleep(0.2))

        event.listen(database.engine.sync_engine, "commit", slow_commit)

        async def command() -> None:
            async with database.transaction() as session:
                await session.execute(insert(items).values(name="committed"))

        task = asyncio.create_task(command())
        await asyncio.wait_for(in_commit.wait(), timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        event.remove(database.engine.sync_engine, "commit", slow_commit)
        assert await item_names(database) == ["committed"]
        assert database.engine.pool.checkedout() == 0
