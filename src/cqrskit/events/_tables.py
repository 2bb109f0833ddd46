"""The tables cqrskit's events keep: outbox, inbox and idempotency keys, in a schema you choose."""

from __future__ import annotations

import functools
import hashlib
import zlib
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cqrskit._errors import ConfigurationError
from cqrskit.events._tenant_columns import add_tenant_columns

if TYPE_CHECKING:
    from cqrskit.sqlalchemy._database import Database

__all__ = [
    "NO_TENANT",
    "PARTITIONS",
    "EventTables",
    "create_event_tables",
    "event_tables",
    "insert_for",
    "missing_event_tables",
    "partition_of",
    "purge_in_batches",
]

PARTITIONS = 32
"""How many ordering partitions the outbox has: a key always falls in the same one; at most this many
relays can publish keyed events at the same time."""

UNORDERED = -1
"""The partition of events without an ordering key: any relay may publish them, in any order."""


NO_TENANT = ""
"""What a tenant column that is part of a key holds for a message or command without a tenant."""


@attrs.frozen
class EventTables:
    """The event tables, bound to one schema (None: the connection's default schema)."""

    schema: str | None
    outbox: sa.Table
    inbox: sa.Table
    idempotency: sa.Table
    dead_letters: sa.Table

    @property
    def notify_channel(self) -> str:
        """The PostgreSQL NOTIFY channel that wakes this outbox's relays."""
        return f"cqrskit_outbox_{zlib.crc32((self.schema or '').encode()):08x}"

    @property
    def lock_namespace(self) -> int:
        """The first key of this outbox's advisory locks: distinct per schema."""
        return _signed32(zlib.crc32(f"cqrskit.outbox:{self.schema or ''}".encode()))


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


def key_lock_id(schema: str | None, key: str) -> int:
    """Return the 64-bit advisory lock id that serialises the writers of one ordering key."""
    digest = hashlib.blake2b(f"{schema or ''}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def partition_of(key: str | None) -> int:
    """Return the outbox partition of an ordering key (`UNORDERED` for None), the same everywhere."""
    if key is None:
        return UNORDERED
    return zlib.crc32(key.encode()) % PARTITIONS


def insert_for(dialect_name: str) -> Any:
    """Return the dialect's ``insert`` (the one with ``on_conflict_do_*``), chosen once at build time.

    The inbox and the idempotency keys rely on ``INSERT ... ON CONFLICT``: PostgreSQL and SQLite.
    """
    if dialect_name == "postgresql":
        return postgresql.insert
    if dialect_name == "sqlite":
        return sqlite.insert
    raise ConfigurationError(
        f"cqrskit's inbox and idempotency keys need PostgreSQL or SQLite, not {dialect_name!r}"
    )


@functools.cache
def event_tables(schema: str | None = None) -> EventTables:
    """Return the table definitions for `schema` (made once per schema)."""
    metadata = sa.MetaData(schema=schema)
    outbox = sa.Table(
        "cqrskit_outbox",
        metadata,
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("message_id", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("ordering_key", sa.String(255), nullable=True),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("published_at", sa.Float(), nullable=True),
        # `LocalTransport` only: until when a consumer holds the row (a lease, so a dead one's rows return).
        sa.Column("claimed_until", sa.Float(), nullable=True),
    )
    sa.Index(
        "cqrskit_outbox_pending",
        outbox.c.partition,
        outbox.c.id,
        postgresql_where=outbox.c.published_at.is_(None),
        sqlite_where=outbox.c.published_at.is_(None),
    )
    inbox = sa.Table(
        "cqrskit_inbox",
        metadata,
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("subscriber", sa.String(255), primary_key=True),
        sa.Column("handled_at", sa.Float(), nullable=False),
        sa.Column("tenant", sa.String(255), nullable=True),  # the message's tenant, for the record
    )
    idempotency = sa.Table(
        "cqrskit_idempotency_keys",
        metadata,
        sa.Column("principal", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("message_type", sa.String(255), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
        # Part of the key: one key sent by two tenants is two operations ("" for no tenant).
        sa.Column("tenant", sa.String(255), primary_key=True, server_default=""),
    )
    dead_letters = sa.Table(
        "cqrskit_dead_letters",
        metadata,
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("queue", sa.String(255), nullable=False, index=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("ordering_key", sa.String(255), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("dead_lettered_at", sa.Float(), nullable=False),
    )
    return EventTables(schema, outbox, inbox, idempotency, dead_letters)


async def create_event_tables(database: Database, schema: str | None = None) -> None:
    """Create the outbox, inbox, idempotency-key and dead-letter tables (and `schema`) unless they exist.

    Call it at deployment or start-up, or use the ``create_tables()`` method of the component that
    needs them; ``await create_event_tables(database, schema="messaging")``. Tables made by a version
    before tenants get their ``tenant`` column here (see `add_tenant_columns`).
    """
    tables = event_tables(schema)
    async with database.engine.begin() as connection:
        if schema is not None and connection.dialect.name == "postgresql":
            await connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await connection.run_sync(tables.outbox.metadata.create_all)
        await connection.run_sync(add_tenant_columns, [tables.inbox, tables.idempotency])


async def missing_event_tables(database: Database, schema: str | None = None) -> list[str]:
    """Return the names of the event tables `schema` lacks, in the order `create_event_tables` makes them.

    Empty when they are all there. It reads the database's catalogue and changes nothing.
    """
    tables = event_tables(schema)
    wanted = (tables.outbox, tables.inbox, tables.idempotency, tables.dead_letters)

    def absent(connection: sa.Connection) -> list[str]:
        inspector = sa.inspect(connection)
        return [table.name for table in wanted if not inspector.has_table(table.name, schema=schema)]

    async with database.engine.connect() as connection:
        return await connection.run_sync(absent)


async def purge_in_batches(
    database: Database, table: sa.Table, key: Any, condition: Any, batch_size: int | None
) -> int:
    """Delete `table`'s rows matching `condition`; return how many.

    Without `batch_size`, in one statement. With it, in transactions of at most `batch_size` rows
    each, chosen by `key` (a column, or a ``tuple_`` of the primary key's); on PostgreSQL rows
    another transaction holds are skipped (``FOR UPDATE SKIP LOCKED``), so a purge never makes a
    writer or a relay wait, and never waits on one.
    """
    if batch_size is None:
        async with database.transaction() as session:
            result = await session.execute(sa.delete(table).where(condition))
        return int(getattr(result, "rowcount", 0) or 0)
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
    columns = list(key.clauses) if hasattr(key, "clauses") else [key]
    chosen = sa.select(*columns).where(condition).limit(batch_size)
    if database.dialect_name == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    deleted = 0
    while True:
        async with database.transaction() as session:
            result = await session.execute(sa.delete(table).where(key.in_(chosen)))
        count = int(getattr(result, "rowcount", 0) or 0)
        deleted += count
        if count < batch_size:
            return deleted
