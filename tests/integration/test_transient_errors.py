"""is_transient on errors real databases raise, raw and wrapped by SQLAlchemy."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cqrskit import CommandBus, Context, OperationStatus
from cqrskit.behaviours import Retry, RetryPolicy, is_transient
from tests.behaviours.policy_support import Ping

BOUND = 10


class TestSQLite:
    """A locked SQLite database, through sqlite3 and through SQLAlchemy with aiosqlite."""

    def test_real_database_is_locked(self, tmp_path: Path) -> None:
        """sqlite3's own 'database is locked' error, with its error code, is transient."""
        path = tmp_path / "locked.db"
        holder = sqlite3.connect(path, isolation_level=None)
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            holder.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError) as caught:
                other.execute("BEGIN IMMEDIATE")
            assert caught.value.sqlite_errorcode == sqlite3.SQLITE_BUSY
            assert is_transient(caught.value)
        finally:
            holder.close()
            other.close()

    async def test_locked_through_sqlalchemy(self, tmp_path: Path) -> None:
        """SQLAlchemy's OperationalError wrapping the aiosqlite error is transient."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}"
        holder = create_async_engine(url)
        other = create_async_engine(url, connect_args={"timeout": 0})
        try:
            async with holder.connect() as held:
                await held.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
                await held.commit()
                await held.exec_driver_sql("BEGIN IMMEDIATE")
                async with other.connect() as blocked:
                    with pytest.raises(DBAPIError) as caught:
                        await blocked.exec_driver_sql("BEGIN IMMEDIATE")
                assert is_transient(caught.value)
                await held.rollback()
        finally:
            await holder.dispose()
            await other.dispose()


@pytest.fixture
async def postgres(postgres_url: str, unique_name: str) -> AsyncIterator[AsyncEngine]:
    """An engine whose search path is a schema of this test's own, holding table t with one row."""
    admin = create_async_engine(postgres_url)
    engine = create_async_engine(postgres_url, connect_args={"server_settings": {"search_path": unique_name}})
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {unique_name}"))
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)"))
            await conn.execute(text("INSERT INTO t VALUES (1, 0)"))
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {unique_name} CASCADE"))
        await admin.dispose()


@pytest.mark.postgres
class TestPostgreSQL:
    """Serialization failures, unique violations and killed connections from a real PostgreSQL."""

    async def test_serialization_failure_is_transient(self, postgres: AsyncEngine) -> None:
        """Two REPEATABLE READ transactions updating one row: the loser's 40001 error is transient."""
        engine = postgres
        update = text("UPDATE t SET v = v + 1 WHERE id = 1")
        read = text("SELECT v FROM t WHERE id = 1")
        repeatable = engine.execution_options(isolation_level="REPEATABLE READ")
        async with repeatable.connect() as first, repeatable.connect() as second:
            await first.execute(read)
            await second.execute(read)
            await first.execute(update)
            blocked = asyncio.create_task(second.execute(update))
            await first.commit()
            with pytest.raises(DBAPIError) as caught:
                await asyncio.wait_for(blocked, timeout=BOUND)
            await second.rollback()
        assert getattr(caught.value.orig, "sqlstate", None) == "40001"
        assert is_transient(caught.value)

    async def test_unique_violation_is_not_transient(self, postgres: AsyncEngine) -> None:
        """A duplicate key (23505) is not transient."""
        engine = postgres
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(text("INSERT INTO t VALUES (1, 0)"))
            await conn.rollback()
        assert not is_transient(caught.value)

    async def test_killed_connection_is_transient(self, postgres: AsyncEngine) -> None:
        """A connection terminated by the server before COMMIT is transient."""
        engine = postgres
        async with engine.connect() as victim, engine.connect() as killer:
            pid = (await victim.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await killer.commit()
            with pytest.raises(DBAPIError) as caught:
                await victim.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))
            await victim.invalidate()
        assert is_transient(caught.value)

    async def test_retry_reruns_a_serialization_failure_to_success(self, postgres: AsyncEngine) -> None:
        """Through a bus, a handler that loses a serialization race once succeeds on the next attempt."""
        engine = postgres
        repeatable = engine.execution_options(isolation_level="REPEATABLE READ")
        attempts = 0

        class Increment:
            async def handle(self, command: Ping, context: Context) -> int:
                nonlocal attempts
                attempts += 1
                async with repeatable.connect() as conn:
                    await conn.execute(text("SELECT v FROM t WHERE id = 1"))
                    if attempts == 1:  # a competitor commits an update after our snapshot was taken
                        async with engine.begin() as rival:
                            await rival.execute(text("UPDATE t SET v = v + 100 WHERE id = 1"))
                    await conn.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))
                    await conn.commit()
                async with engine.connect() as conn:
                    return int((await conn.execute(text("SELECT v FROM t"))).scalar_one())

        bus = CommandBus({Ping: Increment()}, [Retry(RetryPolicy(delay=0.001))])
        result = await asyncio.wait_for(bus.execute(Ping()), timeout=BOUND)
        assert result.status is OperationStatus.SUCCESS
        assert result.data == 101
        assert attempts == 2
