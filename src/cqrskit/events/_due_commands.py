"""`ScheduleRunner` and `ScheduleForwarder`: scheduled commands taken when they are due.

Both claim due rows the same way: in one transaction, oldest due first, at most `batch_size`, and
never a row while an earlier row of its ordering key is pending. On PostgreSQL the claim is
``FOR UPDATE SKIP LOCKED``, so several runners (or forwarders), in as many processes, share the
rows and never take the same one; on SQLite the transaction's ``BEGIN IMMEDIATE`` lets one writer
at a time through. A row is deleted in the transaction that applies (or forwards) its command, so
a crash before that commit leaves it to be taken again: at-least-once delivery, and the inbox row
written with the effect makes it applied once.
"""

from __future__ import annotations

import abc
import json
import random
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cqrskit._errors import ConfigurationError
from cqrskit._loggable import loggable_exception
from cqrskit._logs import library_logger
from cqrskit._results import Result
from cqrskit._status import OperationStatus
from cqrskit.events._dead_letter_hooks import DeadLetterHook, report_dead_letter
from cqrskit.events._envelope import Envelope, open_envelope
from cqrskit.events._event import message_name
from cqrskit.events._polling import PollingLoop
from cqrskit.events._schedule_table import create_schedule_table, schedule_table
from cqrskit.events._tables import event_tables, insert_for, partition_of

if TYPE_CHECKING:
    from cqrskit._bus import CommandBus
    from cqrskit.events._scheduling import CommandScheduler

__all__ = ["ScheduleForwarder", "ScheduleRunner"]

_RETRYABLE = frozenset({OperationStatus.FAILED, OperationStatus.TIMEOUT})


class _Failed(Exception):  # noqa: N818 - a control-flow signal, never seen outside this module
    def __init__(self, status: OperationStatus, error: str) -> None:
        self.status = status
        self.error = error


class _DueLoop(abc.ABC):
    """The polling loop and the claim both classes share."""

    def __init__(
        self,
        scheduler: CommandScheduler,
        *,
        batch_size: int,
        poll_interval: float,
        error_backoff: float,
        logger: Any,
    ) -> None:
        self._scheduler = scheduler
        self._database = scheduler.database
        self._schema = scheduler.schema
        self._table = schedule_table(scheduler.schema)
        self._postgres = self._database.dialect_name == "postgresql"
        self._batch_size = batch_size
        self._logger = logger if logger is not None else library_logger("cqrskit.events")
        self._loop = PollingLoop(poll_interval, error_backoff)
        scheduler.when_due_soon(self.wake)

    async def create_tables(self) -> None:
        """Create the scheduled-commands table and the event tables unless they exist."""
        await create_schedule_table(self._database, self._schema)

    async def started(self) -> None:
        """Wait until `run` has started its first pass."""
        await self._loop.started()

    def stop(self) -> None:
        """Ask `run` to return after the batch in hand."""
        self._loop.stop()

    def wake(self) -> None:
        """Start the next pass now instead of after the poll interval."""
        self._loop.wake()

    async def run(self) -> None:
        """Take due commands until `stop` is called; a database error is logged and retried later."""
        await self._loop.run(self.run_once, self._pass_failed)

    def _pass_failed(self, exc: Exception) -> None:
        self._logger.error("scheduled_commands_failed", **loggable_exception(exc))

    async def run_once(self) -> int:
        """Take one batch of due commands; return how many rows were taken."""
        async with self._database.transaction() as session:
            rows = (await session.execute(self._claim(time.time()))).all()
            if rows:
                await self._take(session, rows)
        return len(rows)

    def _claim(self, now: float) -> Any:
        table = self._table
        earlier = table.alias("earlier")
        blocked = sa.exists().where(
            earlier.c.ordering_key == table.c.ordering_key,
            earlier.c.tenant == table.c.tenant,  # one tenant's commands never wait for another's
            earlier.c.dead_at.is_(None),
            sa.or_(
                earlier.c.due_at < table.c.due_at,
                sa.and_(earlier.c.due_at == table.c.due_at, earlier.c.id < table.c.id),
            ),
        )
        query = (
            sa.select(table)
            .where(
                table.c.dead_at.is_(None),
                table.c.run_at <= now,
                sa.or_(table.c.ordering_key.is_(None), ~blocked),
            )
            .order_by(table.c.due_at, table.c.id)
            .limit(self._batch_size)
        )
        if self._postgres:
            query = query.with_for_update(of=table, skip_locked=True)
        return query

    @abc.abstractmethod
    async def _take(self, session: Any, rows: Sequence[Any]) -> None:
        """Apply or forward the claimed `rows` in the claiming transaction."""


def _envelope(row: Any) -> Envelope:
    headers = json.loads(row.headers)
    if headers.get("key") is None:
        headers["key"] = row.ordering_key  # the key it was scheduled under, as the forwarder sends it
    return Envelope.from_parts(row.message_id, row.name, bytes(row.payload), headers)


class ScheduleRunner(_DueLoop):
    """Runs due scheduled commands through a `CommandBus` in this process: the embedded delivery.

    ``await runner.run()`` until `stop`. Each pass claims a batch of due rows in one transaction;
    each command runs in a savepoint of it together with its inbox row (subscriber: the command's
    name), and its row is deleted in the same transaction, so it is applied once even when a crash
    makes it run again. The command bus's `Transaction` joins that transaction; work it defers
    (events, cache invalidation) runs after the batch commits. A command that fails with FAILED or
    TIMEOUT (or raises) is tried again after an exponential backoff, up to `max_attempts` times;
    another failure status, an unknown name, or the last attempt leaves the row as a dead letter
    (``dead_at`` and ``error`` set). `types` maps names to command classes; by default every type
    the bus routes, under the scheduler's names. `dead_letter_hooks` (`DeadLetterHook`, a
    `ProcessManager` for one) learn of each row left as a dead letter, in a savepoint of the
    transaction that marks it, its envelope's key being the row's ordering key.

    Timing: a due command waits at most `poll_interval` seconds (one is woken at once when this
    process schedules a command that is due already), plus the batches ahead of it.
    """

    def __init__(
        self,
        scheduler: CommandScheduler,
        bus: CommandBus,
        *,
        types: Mapping[str, type] | None = None,
        batch_size: int = 100,
        poll_interval: float = 0.2,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        error_backoff: float = 1.0,
        logger: Any = None,
        dead_letter_hooks: Sequence[DeadLetterHook] = (),
    ) -> None:
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts counts the first attempt: at least 1, got {max_attempts}")
        super().__init__(
            scheduler,
            batch_size=batch_size,
            poll_interval=poll_interval,
            error_backoff=error_backoff,
            logger=logger,
        )
        self._bus = bus
        if types is None:
            types = {message_name(t, scheduler.names): t for t in bus.routes}
        self._types: Mapping[str, type] = MappingProxyType(dict(types))
        self._inbox = event_tables(scheduler.schema).inbox
        self._insert = insert_for(self._database.dialect_name)
        self._converter = scheduler.converter
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._dead_letter_hooks = tuple(dead_letter_hooks)

    async def _take(self, session: Any, rows: Sequence[Any]) -> None:
        table = self._table
        for row in rows:
            try:
                await self._apply(session, row)
            except _Failed as failed:
                await self._failed(session, row, failed)
                continue
            await session.execute(sa.delete(table).where(table.c.id == row.id))

    async def _apply(self, session: Any, row: Any) -> None:
        envelope = _envelope(row)
        command_type = self._types.get(row.name)
        if command_type is None:
            raise _Failed(OperationStatus.NOT_FOUND, f"no command type is known by the name {row.name!r}")
        try:
            message = open_envelope(envelope, command_type, self._converter)
        except Exception as exc:
            raise _Failed(OperationStatus.VALIDATION_ERROR, f"unreadable payload: {exc}") from exc
        try:
            async with self._database.transaction():  # a savepoint: a failure undoes only this command
                claimed = await session.execute(
                    self._insert(self._inbox)
                    .values(
                        message_id=row.message_id,
                        subscriber=row.name,
                        handled_at=time.time(),
                        tenant=envelope.tenant,
                    )
                    .on_conflict_do_nothing()
                    .returning(self._inbox.c.message_id)
                )
                if claimed.first() is None:
                    return  # applied before: a crash came between its commit and ours
                result: Result[Any] = await self._bus.execute(message, envelope.context())
                if result.is_failure:
                    raise _Failed(result.status, _describe(result))  # noqa: TRY301 - rolls the savepoint back
        except _Failed:
            raise
        except Exception as exc:
            self._logger.error(  # noqa: TRY400 - loggable_exception
                "scheduled_command_raised",
                message_id=row.message_id,
                name=row.name,
                **loggable_exception(exc),
            )
            raise _Failed(OperationStatus.FAILED, f"{type(exc).__name__}: {exc}") from exc

    async def _failed(self, session: Any, row: Any, failed: _Failed) -> None:
        table = self._table
        attempts = row.attempts + 1
        now = time.time()
        values: dict[str, Any] = {"attempts": attempts, "error": failed.error[:2000]}
        if failed.status not in _RETRYABLE or attempts >= self._max_attempts:
            values["dead_at"] = now
            self._logger.error(
                "scheduled_command_dead_lettered",
                message_id=row.message_id,
                name=row.name,
                attempts=attempts,
                status=str(failed.status),
            )
        else:
            delay = min(self._max_backoff, self._backoff * 2 ** (attempts - 1))
            values["run_at"] = now + random.uniform(delay / 2, delay)  # noqa: S311 - jitter
            self._logger.warning(
                "scheduled_command_failed", message_id=row.message_id, name=row.name, attempts=attempts
            )
        await session.execute(sa.update(table).where(table.c.id == row.id).values(**values))
        if "dead_at" in values and self._dead_letter_hooks:
            await report_dead_letter(
                self._dead_letter_hooks, self._database, _envelope(row), failed.error, self._logger
            )

    def __repr__(self) -> str:
        return f"ScheduleRunner({self._scheduler!r}, {self._bus!r})"


def _describe(result: Result[Any]) -> str:
    if result.errors:
        return f"{result.status}: " + "; ".join(f"{k}: {v}" for k, v in result.errors.items())
    return str(result.status)


class ScheduleForwarder(_DueLoop):
    """Hands due scheduled commands to the outbox, for an `OutboxRelay` and a worker's `Consumer`.

    Use it instead of a `ScheduleRunner` when commands run on workers behind a broker. Each pass
    moves a batch of due rows into outbox rows (same message id, the scheduled command's ordering
    key) and deletes them, in one transaction; the relay publishes them and the worker's consumer
    applies each once through its inbox. Run one in each of as many processes as you like.
    Timing: at most `poll_interval` seconds after it is due, plus the relay's and consumer's delays.
    """

    def __init__(
        self,
        scheduler: CommandScheduler,
        *,
        batch_size: int = 200,
        poll_interval: float = 0.2,
        error_backoff: float = 1.0,
        logger: Any = None,
    ) -> None:
        super().__init__(
            scheduler,
            batch_size=batch_size,
            poll_interval=poll_interval,
            error_backoff=error_backoff,
            logger=logger,
        )
        self._tables = event_tables(scheduler.schema)

    async def _take(self, session: Any, rows: Sequence[Any]) -> None:
        now = time.time()
        await session.execute(
            sa.insert(self._tables.outbox),
            [
                {
                    "message_id": row.message_id,
                    "name": row.name,
                    "ordering_key": row.ordering_key,
                    "partition": partition_of(row.ordering_key),
                    "payload": row.payload,
                    "headers": _with_key(row.headers, row.ordering_key),
                    "created_at": now,
                }
                for row in rows
            ],
        )
        await session.execute(sa.delete(self._table).where(self._table.c.id.in_([row.id for row in rows])))
        if self._postgres:
            await session.execute(sa.select(sa.func.pg_notify(self._tables.notify_channel, "")))

    def __repr__(self) -> str:
        return f"ScheduleForwarder({self._scheduler!r})"


def _with_key(headers: str, key: str | None) -> str:
    if key is None:
        return headers
    parsed = json.loads(headers)
    parsed["key"] = key
    return json.dumps(parsed, separators=(",", ":"))
