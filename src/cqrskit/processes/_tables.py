"""The tables process managers keep: one row per instance, one per step it took, one per pending deadline."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import attrs
import sqlalchemy as sa

from cqrskit.events._schedule_table import create_schedule_table
from cqrskit.events._tables import NO_TENANT
from cqrskit.events._tenant_columns import add_tenant_columns

if TYPE_CHECKING:
    from cqrskit.sqlalchemy._database import Database

__all__ = ["ProcessTables", "create_process_tables", "process_tables"]


@attrs.frozen
class ProcessTables:
    """The instances, history and deadlines tables of one schema."""

    instances: sa.Table
    history: sa.Table
    deadlines: sa.Table


@functools.cache
def process_tables(schema: str | None = None) -> ProcessTables:
    """Return the process tables of `schema` (made once per schema).

    An instance is keyed by process, `tenant` (``""`` without one) and key: two tenants' messages
    with the same correlation key run two instances.
    """
    metadata = sa.MetaData(schema=schema)
    instances = sa.Table(
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
        sa.Column("tenant", sa.String(255), primary_key=True, server_default=NO_TENANT),
    )
    history = sa.Table(
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
        sa.Column("tenant", sa.String(255), nullable=False, server_default=NO_TENANT),
        sa.UniqueConstraint("process", "tenant", "key", "version", name="cqrskit_process_history_step"),
    )
    # The deadlines an instance waits for: set by a step, removed when the deadline's step is taken,
    # when it is cancelled, or when the instance ends. What finds stuck instances reads it.
    deadlines = sa.Table(
        "cqrskit_process_deadlines",
        metadata,
        sa.Column("process", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("deadline", sa.String(255), primary_key=True),
        sa.Column("due_at", sa.Float(), nullable=False),
        sa.Column("tenant", sa.String(255), primary_key=True, server_default=NO_TENANT),
    )
    sa.Index("cqrskit_process_deadlines_due", deadlines.c.due_at)
    return ProcessTables(instances, history, deadlines)


async def create_process_tables(database: Database, schema: str | None = None) -> None:
    """Create the process tables, the scheduled-commands table and the event tables unless they exist."""
    await create_schedule_table(database, schema)
    tables = process_tables(schema)
    async with database.engine.begin() as connection:
        await connection.run_sync(tables.instances.metadata.create_all)
        await connection.run_sync(add_tenant_columns, [tables.instances, tables.history])
