"""`CommandScheduler`: a command recorded in your transaction now, to run at a time or after a delay."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import cattrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from cqrskit._context import Context
from cqrskit._messages import Command
from cqrskit.events._envelope import Envelope, default_converter, envelope_for
from cqrskit.events._publishers import CURRENT_CONTEXT
from cqrskit.events._schedule_table import create_schedule_table, schedule_table
from cqrskit.events._tables import NO_TENANT, insert_for
from cqrskit.scope import defer_until_commit

if TYPE_CHECKING:
    from cqrskit.sqlalchemy._database import Database

__all__ = ["CommandScheduler", "due_time"]


def due_time(at: dt.datetime | float | None, after: float | dt.timedelta | None, now: float) -> float:
    """Return the UNIX time a command is due: `at`, else `after` seconds from `now`, else `now`."""
    if at is not None and after is not None:
        raise ValueError("give a scheduled command `at` or `after`, not both")
    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            raise ValueError("`at` must be timezone-aware (datetime.now(UTC), not datetime.now())")
        return at.timestamp()
    if at is not None:
        return float(at)
    if isinstance(after, dt.timedelta):
        return now + after.total_seconds()
    if after is not None:
        return now + float(after)
    return now


class CommandScheduler:
    """Records commands to run later, in the caller's own transaction; `cancel` takes one back.

    ``await scheduler.schedule(command, after=timedelta(days=7), key="remind:42")`` writes one row
    of the scheduled-commands table through ``database.session``, so a command whose transaction
    rolls back schedules nothing; called outside a transaction it opens one of its own. The row
    survives restarts. A `ScheduleRunner` (embedded: runs due commands through your command bus in
    process) or a `ScheduleForwarder` (with a broker: hands them to the outbox, for `OutboxRelay`
    and a worker's `Consumer`) takes them when they are due. Either way a command is delivered at
    least once and applied once: its message id, fixed when it was scheduled, is what the inbox
    dedupes on.

    `key` names the scheduled command: scheduling another command under a key that is still pending
    replaces it, and ``await scheduler.cancel(key)`` removes it unless it already ran (or is running).
    Commands that share an `ordering_key` run one at a time, in the order they are due (ties: the
    order they were scheduled). The context (principal, correlation id, tenant) is the one given,
    else the one the publisher behaviour set for the command being handled; the command runs with
    it. Keys are per tenant: two tenants may use one key, for two commands.
    """

    def __init__(
        self,
        database: Database,
        *,
        schema: str | None = None,
        names: Mapping[type, str] | None = None,
        converter: cattrs.Converter | None = None,
    ) -> None:
        self._database = database
        self._schema = schema
        self._table = schedule_table(schema)
        self._insert = insert_for(database.dialect_name)
        self._names = names
        self._converter = converter or default_converter()
        self._wakers: list[Callable[[], None]] = []

    @property
    def database(self) -> Database:
        """The database the schedule is kept in."""
        return self._database

    @property
    def schema(self) -> str | None:
        """The schema of the scheduled-commands table (None: the default one)."""
        return self._schema

    @property
    def names(self) -> Mapping[type, str] | None:
        """The names commands travel under, where they are not their class names."""
        return self._names

    @property
    def converter(self) -> cattrs.Converter:
        """The cattrs converter payloads are written and read with."""
        return self._converter

    async def create_tables(self) -> None:
        """Create the scheduled-commands table and the event tables (inbox, outbox) unless they exist."""
        await create_schedule_table(self._database, self._schema)

    def when_due_soon(self, wake: Callable[[], None]) -> None:
        """Call `wake` after a transaction commits a command that is due already.

        Runners and forwarders of this process register here, so a command due now does not wait
        for their next poll.
        """
        self._wakers.append(wake)

    async def schedule(
        self,
        command: Command[Any],
        *,
        at: dt.datetime | float | None = None,
        after: float | dt.timedelta | None = None,
        key: str | None = None,
        ordering_key: str | None = None,
        context: Context | None = None,
    ) -> str:
        """Schedule `command` for `at` (an aware datetime or a UNIX time) or `after` a delay; return its key.

        With neither it is due at once (and still runs only after your transaction commits).
        """
        if context is None:
            context = CURRENT_CONTEXT.get()
        envelope = envelope_for(command, context, converter=self._converter, names=self._names)
        return await self.schedule_envelope(envelope, at=at, after=after, key=key, ordering_key=ordering_key)

    async def schedule_envelope(
        self,
        envelope: Envelope,
        *,
        at: dt.datetime | float | None = None,
        after: float | dt.timedelta | None = None,
        key: str | None = None,
        ordering_key: str | None = None,
    ) -> str:
        """Schedule a command already in transit form (name, payload, headers); return its key."""
        due = due_time(at, after, time.time())
        key = key if key is not None else uuid.uuid4().hex
        tenant = NO_TENANT if envelope.tenant is None else envelope.tenant
        values = {
            "message_id": envelope.message_id,
            "name": envelope.name,
            "ordering_key": ordering_key,
            "payload": envelope.payload,
            "headers": json.dumps(envelope.headers(), separators=(",", ":")),
            "due_at": due,
            "run_at": due,
            "attempts": 0,
            "dead_at": None,
            "error": None,
        }
        statement = (
            self._insert(self._table)
            .values(key=key, tenant=tenant, **values)
            .on_conflict_do_update(index_elements=[self._table.c.tenant, self._table.c.key], set_=values)
        )
        await self._write(statement)
        if due <= time.time() and self._wakers:
            wake = self._wake_all
            if not defer_until_commit(wake):
                await wake()
        return key

    async def cancel(self, key: str, *, context: Context | None = None) -> bool:
        """Remove the pending command scheduled under `key`; return False when there is none.

        The key is looked up in the tenant of `context` (else of the command being handled, as in
        `schedule`). False means it already ran, is running now, failed for good, or never existed.
        Like `schedule`, it takes effect when your transaction commits.
        """
        if context is None:
            context = CURRENT_CONTEXT.get()
        tenant = context.tenant if context is not None else None
        table = self._table
        result = await self._write(
            sa.delete(table).where(
                table.c.key == key,
                table.c.tenant == (NO_TENANT if tenant is None else tenant),
                table.c.dead_at.is_(None),
            )
        )
        return bool(getattr(result, "rowcount", 0))

    async def _write(self, statement: Any) -> Any:
        if self._database.in_transaction():
            session: AsyncSession = self._database.session
            return await session.execute(statement)
        async with self._database.transaction() as session:
            return await session.execute(statement)

    async def _wake_all(self) -> None:
        for wake in self._wakers:
            wake()

    def __repr__(self) -> str:
        return f"CommandScheduler(schema={self._schema!r})"
