"""Tables made before tenants get their ``tenant`` column from ``create_tables()``, rows kept.

Unit tests of cqrskit.events._tenant_columns, on SQLite and on PostgreSQL (a schema of the test's own).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from cqrskit import Command, Context
from cqrskit.events import CommandScheduler
from cqrskit.events._tenant_columns import add_tenant_columns
from cqrskit.processes import ProcessManager
from cqrskit.processes._tables import process_tables
from cqrskit.sqlalchemy import Database
from tests.events.test_tenants import Onboarding, OnboardingProcess


def tables_before_tenants(schema: str | None) -> sa.MetaData:
    """The library's tables as the version before tenants created them."""
    metadata = sa.MetaData(schema=schema)
    sa.Table(
        "cqrskit_inbox",
        metadata,
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("subscriber", sa.String(255), primary_key=True),
        sa.Column("handled_at", sa.Float(), nullable=False),
    )
    sa.Table(
        "cqrskit_idempotency_keys",
        metadata,
        sa.Column("principal", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("message_type", sa.String(255), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    scheduled = sa.Table(
        "cqrskit_scheduled_commands",
        metadata,
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("key", sa.String(255), nullable=False, unique=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("ordering_key", sa.String(255), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("due_at", sa.Float(), nullable=False),
        sa.Column("run_at", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, default=0),
        sa.Column("dead_at", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    sa.Index(
        "cqrskit_scheduled_commands_due",
        scheduled.c.run_at,
        postgresql_where=scheduled.c.dead_at.is_(None),
        sqlite_where=scheduled.c.dead_at.is_(None),
    )
    sa.Index("cqrskit_scheduled_commands_order", scheduled.c.ordering_key, scheduled.c.due_at, scheduled.c.id)
    sa.Table(
        "cqrskit_process_instances",
        metadata,
        sa.Column("process", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("compensations", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    sa.Table(
        "cqrskit_process_history",
        metadata,
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("process", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sent", sa.Text(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.UniqueConstraint("process", "key", "version"),
    )
    return metadata


OLD_ROWS: dict[str, dict[str, Any]] = {
    "cqrskit_inbox": {"message_id": "m1", "subscriber": "s", "handled_at": 1.0},
    "cqrskit_idempotency_keys": {
        "principal": "u1", "key": "k1", "message_type": "T", "result": None, "expires_at": 4e9
    },
    "cqrskit_scheduled_commands": {
        "key": "remind:1", "message_id": "m2", "name": "Remind", "ordering_key": None, "payload": b"{}",
        "headers": "{}", "due_at": 4e9, "run_at": 4e9, "attempts": 0,
    },
    "cqrskit_process_instances": {
        "process": "onboarding", "key": "1", "status": "running", "version": 1, "state": '{"user_id":"1"}',
        "compensations": "[]", "started_at": 1.0, "updated_at": 1.0,
    },
    "cqrskit_process_history": {
        "process": "onboarding", "key": "1", "version": 1, "message": "UserRegistered", "status": "running",
        "sent": "[]", "at": 1.0,
    },
}  # fmt: skip


@attrs.frozen
class Remind(Command[None]):
    user_id: str


@pytest.fixture(params=["sqlite", "postgresql"])
async def old_database(
    request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> AsyncIterator[tuple[Database, str | None]]:
    """A database whose library tables predate tenants, one row in each; its schema dropped afterwards."""
    if request.param == "sqlite":
        url, schema = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}", None
    else:
        url, schema = request.getfixturevalue("postgres_url"), unique_name
    database = Database(url)
    metadata = tables_before_tenants(schema)
    async with database.engine.begin() as connection:
        if schema is not None:
            await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        await connection.run_sync(metadata.create_all)
        for name, row in OLD_ROWS.items():
            table = metadata.tables[f"{schema}.{name}" if schema else name]
            await connection.execute(sa.insert(table).values(**row))
    try:
        yield database, schema
    finally:
        if schema is not None:
            async with database.engine.begin() as connection:
                await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await database.dispose()


async def columns_and_rows(database: Database, schema: str | None, name: str) -> tuple[set[str], list[Any]]:
    async with database.engine.connect() as connection:
        table = await connection.run_sync(
            lambda sync: sa.Table(name, sa.MetaData(schema=schema), autoload_with=sync)
        )
        rows = (await connection.execute(sa.select(table))).mappings().all()
    return {c.name for c in table.columns}, [dict(row) for row in rows]


class TestUpgrade:
    """``create_tables()`` upgrades tables made before tenants, in place."""

    async def test_every_table_gets_its_tenant_column_and_keeps_its_rows(
        self, old_database: tuple[Database, str | None]
    ) -> None:
        """Each old row is kept, as no tenant's ("" or NULL); a second run changes nothing."""
        database, schema = old_database
        scheduler = CommandScheduler(database, schema=schema)
        process = ProcessManager(
            OnboardingProcess(), name="onboarding", state=Onboarding, scheduler=scheduler
        )
        await process.create_tables()
        for name, row in OLD_ROWS.items():
            columns, rows = await columns_and_rows(database, schema, name)
            assert "tenant" in columns, name
            (kept,) = rows
            assert kept["tenant"] == (None if name == "cqrskit_inbox" else ""), name
            assert {k: kept[k] for k in row} == row, name
        instance = await process.instance("1")
        assert instance is not None
        assert instance.state == Onboarding("1")
        async with database.engine.begin() as connection:
            again = await connection.run_sync(
                add_tenant_columns, [process_tables(schema).instances, process_tables(schema).history]
            )
        assert again == []

    async def test_the_new_keys_work_on_the_upgraded_tables(
        self, old_database: tuple[Database, str | None]
    ) -> None:
        """After the upgrade one schedule key serves two tenants (ON CONFLICT needs the new unique key)."""
        database, schema = old_database
        scheduler = CommandScheduler(database, schema=schema)
        await scheduler.create_tables()
        await scheduler.schedule(Remind("1"), key="remind:1", after=3600, context=Context(tenant="acme"))
        await scheduler.schedule(Remind("1"), key="remind:1", after=3600, context=Context(tenant="globex"))
        await scheduler.schedule(Remind("2"), key="remind:1", after=3600)  # replaces the untenanted row
        _, rows = await columns_and_rows(database, schema, "cqrskit_scheduled_commands")
        assert sorted((r["tenant"], r["key"]) for r in rows) == [
            ("", "remind:1"),
            ("acme", "remind:1"),
            ("globex", "remind:1"),
        ]
