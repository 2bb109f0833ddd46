"""`OutboxPublisher`: events written as outbox rows in the command's own transaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import cattrs
import sqlalchemy as sa

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._messages import Command
from cqrskit._pipeline import require_kind
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit.events._envelope import envelope_for
from cqrskit.events._event import Event
from cqrskit.events._publishers import CURRENT_CONTEXT
from cqrskit.events._tables import create_event_tables, event_tables, key_lock_id, partition_of
from cqrskit.scope import defer_until_commit

if TYPE_CHECKING:
    from cqrskit.sqlalchemy._database import Database

__all__ = ["OutboxPublisher"]


class OutboxPublisher:
    """Writes each published event as a row of the outbox table, in the command's own transaction.

    The row commits or rolls back with the command's other writes, so an event leaves only for a
    command that committed; an `OutboxRelay` then moves it to the broker. Call ``publish`` inside a
    transaction (`Transaction`, or ``database.transaction()``): outside one, `database.session`
    raises. Events with the same ordering key are written one transaction at a time (a
    transaction-scoped advisory lock on PostgreSQL), so their outbox order is their commit order.

    List it as a command-bus behaviour too, at `Stage.PUBLISHING` (inside `Transaction`, before
    `Idempotency`), and the rows carry the command's correlation id and principal without handlers
    passing their context.

    `wake`, when given, is called after each transaction that wrote events commits: pass
    `LocalTransport.wake` so the in-process consumer delivers them at once instead of at its next poll.
    """

    stage = Stage.PUBLISHING

    def __init__(
        self,
        database: Database,
        *,
        schema: str | None = None,
        names: Mapping[type, str] | None = None,
        converter: cattrs.Converter | None = None,
        wake: Callable[[], object] | None = None,
    ) -> None:
        self._database = database
        self._wake = wake
        self._schema = schema
        self._tables = event_tables(schema)
        self._names = names
        self._converter = converter
        self._notified = f"cqrskit_outbox_notified:{schema or ''}"
        self._postgres = database.dialect_name == "postgresql"

    def bind(self, message_type: type) -> OutboxPublisher:
        """Stay in every command's pipeline; on any bus but a command bus, raise `ConfigurationError`."""
        require_kind(self, message_type, Command)
        return self

    async def create_tables(self) -> None:
        """Create the outbox (and the other event tables) in this publisher's schema."""
        await create_event_tables(self._database, self._schema)

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Make the command's context the one its published events carry."""
        token = CURRENT_CONTEXT.set(context)
        try:
            return await call_next(message, context)
        finally:
            CURRENT_CONTEXT.reset(token)

    async def publish(self, event: Event, context: Context | None = None) -> None:
        """Insert `event` into the outbox through the current transaction's session."""
        if context is None:
            context = CURRENT_CONTEXT.get()
        envelope = envelope_for(event, context, converter=self._converter, names=self._names)
        session = self._database.session
        postgres = self._postgres
        if envelope.key is not None and postgres:
            await session.execute(
                sa.select(sa.func.pg_advisory_xact_lock(key_lock_id(self._schema, envelope.key)))
            )
        await session.execute(
            sa.insert(self._tables.outbox).values(
                message_id=envelope.message_id,
                name=envelope.name,
                ordering_key=envelope.key,
                partition=partition_of(envelope.key),
                payload=envelope.payload,
                headers=json.dumps(envelope.headers(), separators=(",", ":")),
                created_at=envelope.created_at,
            )
        )
        if self._wake is not None:
            defer_until_commit(self._woken)  # never for a rollback; at most a few calls per transaction
        if postgres and not session.info.get(self._notified):
            # Delivered at COMMIT (and never for a rollback); PostgreSQL folds repeats into one.
            await session.execute(sa.select(sa.func.pg_notify(self._tables.notify_channel, "")))
            session.info[self._notified] = True

    async def _woken(self) -> None:
        if self._wake is not None:
            self._wake()

    def __repr__(self) -> str:
        return f"OutboxPublisher(schema={self._schema!r})"
