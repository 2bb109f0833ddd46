"""The table scheduled commands wait in until they are due, in a schema you choose."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import sqlalchemy as sa

from cqrskit.events._tables import NO_TENANT, create_event_tables
from cqrskit.events._tenant_columns import add_tenant_columns

if TYPE_CHECKING:
    from cqrskit.sqlalchemy._database import Database

__all__ = ["create_schedule_table", "schedule_table"]


@functools.cache
def schedule_table(schema: str | None = None) -> sa.Table:
    """Return the scheduled-commands table of `schema` (made once per schema).

    A row is a command in transit form (name, JSON payload, headers) with the message id the inbox
    dedupes on, fixed when it was scheduled. `due_at` is when it was asked to run; `run_at` is when
    it may next be tried (later than `due_at` while a failed attempt waits to be retried). A row
    leaves the table when its command is applied (or handed to the outbox); a row that failed for
    good stays, with `dead_at` and the `error`, as a dead letter. `key` is unique per `tenant` (``""``
    for a command scheduled without one): two tenants' commands never replace each other.
    """
    metadata = sa.MetaData(schema=schema)
    table = sa.Table(
        "cqrskit_scheduled_commands",
        metadata,
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("key", sa.String(255), nullable=False),
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
        sa.Column("tenant", sa.String(255), nullable=False, server_default=NO_TENANT),
        sa.UniqueConstraint("tenant", "key", name="cqrskit_scheduled_commands_tenant_key"),
    )
    sa.Index(
        "cqrskit_scheduled_commands_due",
        table.c.run_at,
        postgresql_where=table.c.dead_at.is_(None),
        sqlite_where=table.c.dead_at.is_(None),
    )
    sa.Index("cqrskit_scheduled_commands_order", table.c.ordering_key, table.c.due_at, table.c.id)
    return table


async def create_schedule_table(database: Database, schema: str | None = None) -> None:
    """Create the scheduled-commands table and the event tables (the inbox) unless they exist."""
    await create_event_tables(database, schema)
    table = schedule_table(schema)
    async with database.engine.begin() as connection:
        await connection.run_sync(table.metadata.create_all)
        await connection.run_sync(add_tenant_columns, [table])
