"""`OutboxRelay`: moves committed outbox rows to the broker, in order per key, with several relays."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from cqrskit._loggable import loggable_exception
from cqrskit._logs import library_logger
from cqrskit.events._envelope import Envelope
from cqrskit.events._observer import NO_OBSERVER, Observer
from cqrskit.events._polling import PollingLoop
from cqrskit.events._tables import (
    UNORDERED,
    create_event_tables,
    event_tables,
    missing_event_tables,
    purge_in_batches,
)
from cqrskit.events._trace import publish_span

if TYPE_CHECKING:
    from cqrskit.events._transport import Transport
    from cqrskit.sqlalchemy._database import Database

__all__ = ["OutboxBacklog", "OutboxRelay"]


@attrs.frozen
class OutboxBacklog:
    """What `OutboxRelay.backlog` measured: unsent rows, and the age in seconds of the oldest (or None)."""

    pending: int
    oldest_age: float | None


class OutboxRelay:
    """Publishes unpublished outbox rows through a `Transport`, then marks them published.

    Run one per process, as many processes as you like: ``await relay.run()`` until you call
    `stop` (or cancel it). Each pass takes the outbox one partition at a time, in a transaction:

    - keyed rows: the relay first takes the partition's transaction-scoped advisory lock
      (``pg_try_advisory_xact_lock``) and skips partitions another relay holds, so one key's rows
      are published by one relay at a time, oldest first;
    - rows without a key are shared out with ``FOR UPDATE SKIP LOCKED``;
    - it publishes the batch, waits for the broker's confirms, marks the rows and commits.

    While relays are healthy no row is published twice. A relay that dies after publishing and
    before its commit leaves the rows unmarked, and they are published again: delivery is
    at-least-once, and the consumer's inbox makes the handling effectively-once. On SQLite (one
    process) the transaction's write lock does the same job.
    """

    def __init__(
        self,
        database: Database,
        transport: Transport,
        *,
        schema: str | None = None,
        batch_size: int = 200,
        poll_interval: float = 0.1,
        error_backoff: float = 1.0,
        logger: Any = None,
        observer: Observer | None = None,
    ) -> None:
        self._database = database
        self._transport = transport
        self._schema = schema
        self._tables = event_tables(schema)
        self._postgres = database.dialect_name == "postgresql"
        self._batch_size = batch_size
        self._logger = logger if logger is not None else library_logger("cqrskit.events")
        self._loop = PollingLoop(poll_interval, error_backoff)
        self._observer = observer if observer is not None else NO_OBSERVER
        self._last_pass: float | None = None

    @property
    def database(self) -> Database:
        """The database whose outbox this relay reads."""
        return self._database

    @property
    def transport(self) -> Transport:
        """The transport this relay publishes through."""
        return self._transport

    @property
    def observer(self) -> Observer:
        """What this relay reports to (`NO_OBSERVER` unless one was given)."""
        return self._observer

    @property
    def last_pass_at(self) -> float | None:
        """UNIX time the last pass of `run` ended without an error; None before the first."""
        return self._last_pass

    async def backlog(self) -> OutboxBacklog:
        """Count the unsent outbox rows and measure the age of the oldest one (one query)."""
        outbox = self._tables.outbox
        query = sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(
            outbox.c.published_at.is_(None)
        )
        async with self._database.engine.connect() as connection:
            count, oldest = (await connection.execute(query)).one()
        age = None if oldest is None else max(0.0, time.time() - float(oldest))
        return OutboxBacklog(int(count), age)

    async def create_tables(self) -> None:
        """Create the outbox (and the other event tables) in this relay's schema."""
        await create_event_tables(self._database, self._schema)

    async def missing_tables(self) -> list[str]:
        """Return the names of the event tables this relay's schema lacks (empty: ready to run)."""
        return await missing_event_tables(self._database, self._schema)

    async def purge(self, older_than: float = 7 * 24 * 3600.0, *, batch_size: int | None = None) -> int:
        """Delete rows published more than `older_than` seconds ago; return how many.

        Published rows are kept (for inspection) until you purge them; ``python -m cqrskit relay``
        does it on a schedule. With `batch_size`, rows go in transactions of at most that many,
        skipping rows another transaction holds, so writers and relays never wait on a long delete.
        """
        outbox = self._tables.outbox
        cutoff = time.time() - older_than
        return await purge_in_batches(
            self._database, outbox, outbox.c.id, outbox.c.published_at < cutoff, batch_size
        )

    async def started(self) -> None:
        """Wait until `run` is listening for notifications (PostgreSQL) and about to make its first pass."""
        await self._loop.started()

    def stop(self) -> None:
        """Ask `run` to return after the batch in hand."""
        self._loop.stop()

    def wake(self) -> None:
        """Start the next pass now instead of after the poll interval."""
        self._loop.wake()

    async def run(self) -> None:
        """Relay until `stop` is called; a broker or database error is logged and retried later.

        On PostgreSQL the relay also LISTENs for the notification `OutboxPublisher` sends when a
        transaction with events commits, and starts a pass at once instead of at the next poll.
        """
        await self._loop.run(self._pass, self._failed, self._listening() if self._postgres else None)

    async def _pass(self) -> int:
        moved = await self.relay_once()
        self._last_pass = time.time()
        return moved

    def _failed(self, exc: Exception) -> None:
        self._logger.error("outbox_relay_failed", **loggable_exception(exc))
        self._observer.publish_failed()

    @contextlib.asynccontextmanager
    async def _listening(self) -> AsyncIterator[None]:
        """LISTEN on a connection of its own for as long as the relay runs (polling covers a miss)."""
        channel = self._tables.notify_channel

        def notified(*_: object) -> None:
            self._loop.wake()

        try:
            connection = await self._database.engine.connect()
            raw: Any = (await connection.get_raw_connection()).driver_connection  # asyncpg's
            await raw.add_listener(channel, notified)
        except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
            self._logger.warning("outbox_listen_failed", **loggable_exception(exc))
            yield
            return
        try:
            yield
        finally:
            # Shielded: a relay cancelled while it stops must still hand its connection back.
            await asyncio.shield(_unlisten(connection, raw, channel, notified))

    async def relay_once(self) -> int:
        """Make one pass over every partition with pending rows; return how many rows were published."""
        outbox = self._tables.outbox
        scan = sa.select(outbox.c.partition).where(outbox.c.published_at.is_(None)).distinct()
        async with self._database.engine.connect() as connection:  # the primary: a replica may lag
            pending = list((await connection.execute(scan)).scalars())
        random.shuffle(pending)  # relays starting together spread over the partitions
        moved = 0
        for partition in pending:
            if self._loop.stopping:
                break
            moved += await self._relay_partition(partition)
        return moved

    async def _relay_partition(self, partition: int) -> int:
        outbox = self._tables.outbox
        postgres = self._postgres
        async with self._database.transaction() as session:
            if partition != UNORDERED and postgres:
                locked = await session.scalar(
                    sa.select(sa.func.pg_try_advisory_xact_lock(self._tables.lock_namespace, partition))
                )
                if not locked:
                    return 0  # another relay has this partition
            query = (
                sa.select(outbox.c.id, outbox.c.message_id, outbox.c.name, outbox.c.payload, outbox.c.headers)
                .where(outbox.c.partition == partition, outbox.c.published_at.is_(None))
                .order_by(outbox.c.id)
                .limit(self._batch_size)
            )
            if postgres:
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).all()
            if not rows:
                return 0
            envelopes = [
                Envelope.from_parts(row.message_id, row.name, bytes(row.payload), json.loads(row.headers))
                for row in rows
            ]
            with publish_span([e.trace_context for e in envelopes]):
                await self._transport.publish(envelopes)
            self._observer.published(envelopes)
            await session.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_([row.id for row in rows]))
                .values(published_at=time.time())
            )
        return len(rows)

    def __repr__(self) -> str:
        return f"OutboxRelay(schema={self._schema!r}, transport={self._transport!r})"


async def _unlisten(connection: Any, raw: Any, channel: str, notified: Any) -> None:
    try:
        with contextlib.suppress(Exception):  # a broken connection is closed (and discarded) below
            await raw.remove_listener(channel, notified)
    finally:
        await connection.close()
