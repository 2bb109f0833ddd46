"""`LocalTransport`: the outbox table itself as the queue, for delivery in process without a broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cqrskit._logs import library_logger
from cqrskit.events._envelope import Envelope
from cqrskit.events._tables import create_event_tables, event_tables, partition_of
from cqrskit.scope import defer_until_commit

_logger = library_logger("cqrskit.events")

if TYPE_CHECKING:
    from cqrskit.events._transport import Delivery
    from cqrskit.sqlalchemy._database import Database

__all__ = ["LocalTransport"]

_WEEK = 7 * 24 * 3600.0


class LocalTransport:
    """A `Transport` whose queue is the outbox table: durable delivery in process, no broker needed.

    It is the embedded default's half of "one mechanism, two transports": `OutboxPublisher` writes
    events as outbox rows in the command's transaction, exactly as with a broker, and a `Consumer`
    reading this transport runs them through the `EventBus` with the same inbox, retries and dead
    letters. There is no relay: `consume` claims committed rows straight from the outbox.

    - Claiming: a consumer takes up to `prefetch` pending rows, oldest first, and marks them held for
      `lease` seconds; acknowledging marks a row delivered, releasing frees it, and a row whose
      holder died (its lease ran out) is claimed again by any process, or by this one after a
      restart. Several processes may consume the same outbox: each row goes to one of them at a time.
    - Promptness: give `wake` to `OutboxPublisher` (``wake=transport.wake``) and the consumer looks
      for rows right after each commit that wrote some; otherwise (and for other processes' rows) it
      looks every `poll_interval` seconds.
    - Dead letters go to the ``cqrskit_dead_letters`` table: `dead_letters`, `replay`, `purge`.

    Each message name is read by one queue (the outbox row is delivered once, not once per queue).
    Create the tables with `create_tables` (or `create_event_tables`).
    """

    def __init__(
        self,
        database: Database,
        *,
        schema: str | None = None,
        lease: float = 30.0,
        poll_interval: float = 0.5,
    ) -> None:
        self._database = database
        self._schema = schema
        self._tables = event_tables(schema)
        self._postgres = database.dialect_name == "postgresql"
        self._lease = lease
        self._poll_interval = poll_interval
        self._waiting: set[asyncio.Event] = set()

    @property
    def schema(self) -> str | None:
        """The schema of the outbox this transport reads."""
        return self._schema

    async def create_tables(self) -> None:
        """Create the outbox, the inbox and the dead-letter table (the event tables) in this schema."""
        await create_event_tables(self._database, self._schema)

    def wake(self) -> None:
        """Make every consumer of this transport in this process look for rows now."""
        for event in self._waiting:
            event.set()

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Write `envelopes` as outbox rows: in the open transaction if there is one, else in their own.

        This is what `CommandSender` uses: a command sent inside a transaction leaves only if it commits.
        """
        if not envelopes:
            return
        rows = [_row(envelope) for envelope in envelopes]
        async with self._database.transaction() as session:
            await session.execute(sa.insert(self._tables.outbox), rows)
            if defer_until_commit(self._wake_after_commit):
                return
        self.wake()

    async def _wake_after_commit(self) -> None:
        self.wake()

    @contextlib.asynccontextmanager
    async def consume(
        self, queue: str, names: Collection[str], *, prefetch: int
    ) -> AsyncIterator[AsyncIterator[Delivery]]:
        """Yield the outbox's pending rows named `names` as deliveries, claiming `prefetch` at a time.

        Rows claimed and not settled when the block ends are released at once.
        """
        wanted = tuple(names)
        held: dict[int, _LocalDelivery] = {}
        woken = asyncio.Event()
        self._waiting.add(woken)

        async def deliveries() -> AsyncIterator[Delivery]:
            while True:
                woken.clear()  # a commit from now on starts another claim
                room = max(1, prefetch - len(held))
                try:
                    claimed = await self._claim(queue, wanted, room)
                except Exception as exc:  # noqa: BLE001 - the database is away: wait, then claim again
                    # Delivery must outlive a database outage: the rows stay in the outbox, and the
                    # next poll claims them once the database answers again.
                    # No traceback: this repeats every poll for as long as the outage lasts.
                    _logger.warning("local_claim_failed", error_type=type(exc).__name__)
                    claimed = []
                for delivery in claimed:
                    held[delivery.row_id] = delivery
                    delivery.on_settled = held.pop
                    yield delivery
                    woken.set()  # after a batch, look again at once
                if not woken.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), self._poll_interval)

        try:
            yield deliveries()
        finally:
            self._waiting.discard(woken)
            if held:
                # Shielded: the rows of a consumer that stops go back to the outbox at once. When the
                # database cannot be reached their lease runs out instead, and they come back then.
                try:
                    await asyncio.shield(self._release(tuple(held)))
                except Exception as exc:  # noqa: BLE001 - see above
                    _logger.warning("local_release_failed", rows=len(held), error_type=type(exc).__name__)

    async def _claim(self, queue: str, names: tuple[str, ...], limit: int) -> list[_LocalDelivery]:
        outbox = self._tables.outbox
        now = time.time()
        query = (
            sa.select(outbox.c.id, outbox.c.message_id, outbox.c.name, outbox.c.payload, outbox.c.headers)
            .where(
                outbox.c.published_at.is_(None),
                outbox.c.name.in_(names),
                sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        async with self._database.engine.begin() as connection:  # BEGIN IMMEDIATE on SQLite
            rows = (await connection.execute(query)).all()
            if rows:
                await connection.execute(
                    sa.update(outbox)
                    .where(outbox.c.id.in_([row.id for row in rows]))
                    .values(claimed_until=now + self._lease)
                )
        return [
            _LocalDelivery(
                self,
                queue,
                row.id,
                Envelope.from_parts(row.message_id, row.name, bytes(row.payload), json.loads(row.headers)),
            )
            for row in rows
        ]

    async def _release(self, row_ids: Collection[int]) -> None:
        outbox = self._tables.outbox
        async with self._database.engine.begin() as connection:
            await connection.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_(list(row_ids)), outbox.c.published_at.is_(None))
                .values(claimed_until=None)
            )

    async def _settle(self, row_id: int, dead_letter: tuple[str, Envelope] | None) -> None:
        outbox = self._tables.outbox
        now = time.time()
        async with self._database.engine.begin() as connection:
            if dead_letter is not None:
                queue, envelope = dead_letter
                await connection.execute(
                    sa.insert(self._tables.dead_letters).values(
                        queue=queue,
                        message_id=envelope.message_id,
                        name=envelope.name,
                        ordering_key=envelope.key,
                        payload=envelope.payload,
                        headers=json.dumps(envelope.headers(), separators=(",", ":")),
                        created_at=envelope.created_at,
                        dead_lettered_at=now,
                    )
                )
            await connection.execute(
                sa.update(outbox).where(outbox.c.id == row_id).values(published_at=now, claimed_until=None)
            )

    async def dead_letters(self, queue: str, *, limit: int = 1000) -> list[Envelope]:
        """Return up to `limit` of `queue`'s dead letters, oldest first."""
        table = self._tables.dead_letters
        query = (
            sa.select(table.c.message_id, table.c.name, table.c.payload, table.c.headers)
            .where(table.c.queue == queue)
            .order_by(table.c.id)
            .limit(limit)
        )
        async with self._database.read_session() as session:
            rows = (await session.execute(query)).all()
        return [
            Envelope.from_parts(row.message_id, row.name, bytes(row.payload), json.loads(row.headers))
            for row in rows
        ]

    async def replay(self, queue: str, message_ids: Collection[str] | None = None) -> int:
        """Deliver `queue`'s dead letters again (those of `message_ids`, or all); return how many.

        Each goes back to the outbox under its own message id, so the inbox runs only the
        subscribers that had not committed it; it leaves the dead-letter table.
        """
        table, outbox = self._tables.dead_letters, self._tables.outbox
        async with self._database.transaction() as session:
            rows = (await session.execute(self._selected(queue, message_ids))).all()
            for row in rows:
                reopened = await session.execute(
                    sa.update(outbox)
                    .where(outbox.c.message_id == row.message_id)
                    .values(published_at=None, claimed_until=None)
                )
                if not getattr(reopened, "rowcount", 0):  # purged from the outbox meanwhile
                    envelope = Envelope.from_parts(
                        row.message_id, row.name, bytes(row.payload), json.loads(row.headers)
                    )
                    await session.execute(sa.insert(outbox).values(**_row(envelope)))
            if rows:
                await session.execute(sa.delete(table).where(table.c.id.in_([row.id for row in rows])))
        self.wake()
        return len(rows)

    async def purge(self, queue: str, message_ids: Collection[str] | None = None) -> int:
        """Delete `queue`'s dead letters (those of `message_ids`, or all) without delivering them."""
        table = self._tables.dead_letters
        condition = table.c.queue == queue
        if message_ids is not None:
            condition = condition & table.c.message_id.in_(list(message_ids))
        async with self._database.transaction() as session:
            result = await session.execute(sa.delete(table).where(condition))
        return int(getattr(result, "rowcount", 0) or 0)

    async def purge_delivered(self, older_than: float = _WEEK) -> int:
        """Delete outbox rows delivered more than `older_than` seconds ago; return how many."""
        outbox = self._tables.outbox
        cutoff = time.time() - older_than
        async with self._database.transaction() as session:
            result = await session.execute(sa.delete(outbox).where(outbox.c.published_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    def _selected(self, queue: str, message_ids: Collection[str] | None) -> Any:
        table = self._tables.dead_letters
        query = sa.select(table).where(table.c.queue == queue).order_by(table.c.id)
        if message_ids is not None:
            query = query.where(table.c.message_id.in_(list(message_ids)))
        return query

    def __repr__(self) -> str:
        return f"LocalTransport(schema={self._schema!r})"


def _row(envelope: Envelope) -> dict[str, Any]:
    return {
        "message_id": envelope.message_id,
        "name": envelope.name,
        "ordering_key": envelope.key,
        "partition": partition_of(envelope.key),
        "payload": envelope.payload,
        "headers": json.dumps(envelope.headers(), separators=(",", ":")),
        "created_at": envelope.created_at,
    }


class _LocalDelivery:
    """One claimed outbox row; settling it updates the row (and writes the dead letter)."""

    __slots__ = ("_queue", "_settled", "_transport", "envelope", "on_settled", "row_id")

    def __init__(self, transport: LocalTransport, queue: str, row_id: int, envelope: Envelope) -> None:
        self._transport = transport
        self._queue = queue
        self.row_id = row_id
        self.envelope = envelope
        self._settled = False
        self.on_settled: Any = None

    def _done(self) -> bool:
        if self._settled:
            return True
        self._settled = True
        if self.on_settled is not None:
            self.on_settled(self.row_id, None)
        return False

    async def ack(self) -> None:
        """Mark the row delivered."""
        if not self._done():
            await self._transport._settle(self.row_id, None)

    async def dead_letter(self) -> None:
        """Move the message to the dead-letter table and mark the row settled."""
        if not self._done():
            await self._transport._settle(self.row_id, (self._queue, self.envelope))

    async def release(self) -> None:
        """Free the row for another attempt, here or in another process."""
        if not self._done():
            await self._transport._release((self.row_id,))
