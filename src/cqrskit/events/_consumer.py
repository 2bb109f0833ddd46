"""`Consumer`: broker messages back into events or commands, handled effectively once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import cattrs
import sqlalchemy as sa

from cqrskit._context import Context
from cqrskit._errors import ConfigurationError
from cqrskit._loggable import loggable_exception
from cqrskit._logs import library_logger
from cqrskit._messages import Command
from cqrskit._results import Result
from cqrskit._status import OperationStatus
from cqrskit.events._bus import EventBus
from cqrskit.events._dead_letter_hooks import DeadLetterHook, report_dead_letter
from cqrskit.events._envelope import Envelope, open_envelope
from cqrskit.events._event import Event
from cqrskit.events._observer import NO_OBSERVER, Observer
from cqrskit.events._tables import (
    create_event_tables,
    event_tables,
    insert_for,
    missing_event_tables,
    purge_in_batches,
)
from cqrskit.events._trace import consume_span
from cqrskit.events._transport import Delivery

if TYPE_CHECKING:
    from cqrskit._bus import CommandBus
    from cqrskit.events._transport import Transport
    from cqrskit.sqlalchemy._database import Database

__all__ = ["Consumer"]

_RETRYABLE = frozenset({OperationStatus.FAILED, OperationStatus.TIMEOUT, OperationStatus.UNAVAILABLE})

Runner = Callable[[Any, Context], Awaitable[Result[Any]]]
Target = tuple[str, Runner]


class _Message:
    """One message in hand: its deliveries, the subscribers left to run, and its failed attempts.

    A copy of the message received again in the same batch joins the first one's deliveries.
    """

    __slots__ = (
        "context",
        "deliveries",
        "envelope",
        "failures",
        "message",
        "message_id",
        "name",
        "reported",
        "targets",
    )

    def __init__(self, delivery: Delivery, message: Any, targets: tuple[Target, ...]) -> None:
        envelope = delivery.envelope
        self.envelope = envelope
        self.deliveries = [delivery]
        self.message_id = envelope.message_id
        self.name = envelope.name
        self.message = message
        self.context = envelope.context()
        self.targets = targets  # the subscribers not yet committed
        self.failures = 0
        self.reported = False  # its dead-letter hooks ran in a transaction that committed


class _Round:
    """What one transaction over a batch did, settled once it has committed."""

    __slots__ = ("dead", "done", "rest", "retry")

    def __init__(self) -> None:
        self.done: list[_Message] = []  # every subscriber committed (or had before)
        self.dead: list[_Message] = []  # failed for good: dead-lettered after the commit
        self.retry: _Message | None = None  # failed, to try again after a backoff
        self.rest: list[_Message] = []  # after `retry`: not run, to keep the queue's order


class Consumer:
    """Receives messages from one queue and runs them through an `EventBus` or a `CommandBus`.

    `types` maps each name a message travels under to its class (``{"UserCreated": UserCreated}``);
    the consumer binds `queue` to those names and structures payloads back with cattrs. Messages are
    handled in batches of up to `batch_size`, one ``database.transaction()`` per batch: first the
    inbox rows, keyed by (message id, subscriber name), then each subscriber in a savepoint of its
    own, so each subscriber's effects commit with its inbox row or not at all. A message delivered
    again re-runs only the subscribers that had not committed, so each one's effects happen once.
    A command is one subscriber (named after the command) and its Result goes nowhere but the log.
    Each message is dispatched with its envelope's context (`Envelope.context`: principal,
    correlation id, tenant), and its inbox rows record its tenant.

    Messages are acknowledged after their batch has committed. A subscriber that raises or returns
    FAILED or TIMEOUT is rolled back alone (its savepoint), the batch up to it commits, and its
    message is retried with exponential backoff and full jitter; after `max_attempts`, or at once
    for any other failure status (a validation error will not heal), the message goes to the
    queue's dead-letter queue and the consumer carries on with the next one.

    ``concurrency=1`` (the default) handles one batch at a time, each in queue order: what per-key
    ordering needs; more runs that many batches at once. Run it with ``await consumer.run()`` and
    end it with `stop`.

    `dead_letter_hooks` (`DeadLetterHook`, a `ProcessManager` for one) learn of each message given up
    on, in a savepoint of the batch's transaction, before it is dead-lettered.
    """

    def __init__(
        self,
        transport: Transport,
        bus: EventBus | CommandBus,
        database: Database,
        *,
        types: Mapping[str, type],
        queue: str,
        schema: str | None = None,
        max_attempts: int = 5,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        prefetch: int = 20,
        concurrency: int = 1,
        batch_size: int = 50,
        converter: cattrs.Converter | None = None,
        logger: Any = None,
        observer: Observer | None = None,
        dead_letter_hooks: Sequence[DeadLetterHook] = (),
    ) -> None:
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts counts the first attempt: at least 1, got {max_attempts}")
        if batch_size < 1:
            raise ConfigurationError(f"batch_size is how many messages share a transaction: got {batch_size}")
        self._transport = transport
        self._bus = bus
        self._database = database
        self._types: Mapping[str, type] = MappingProxyType(dict(types))
        self._queue = queue
        self._schema = schema
        self._inbox = event_tables(schema).inbox
        self._insert = insert_for(database.dialect_name)
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._prefetch = max(prefetch, concurrency)
        self._concurrency = concurrency
        self._batch_size = batch_size
        self._converter = converter
        self._logger = logger if logger is not None else library_logger("cqrskit.events")
        self._targets = {name: self._targets_for(name, t) for name, t in self._types.items()}
        self._receiver: asyncio.Task[None] | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._waiting: deque[Delivery] = deque()
        self._arrived = asyncio.Event()
        self._taking = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self._observer = observer if observer is not None else NO_OBSERVER
        self._dead_letter_hooks = tuple(dead_letter_hooks)

    def _targets_for(self, name: str, message_type: type) -> tuple[Target, ...]:
        bus = self._bus
        if isinstance(bus, EventBus):
            if not issubclass(message_type, Event):
                raise ConfigurationError(f"{name!r} maps to {message_type!r}, not an Event, on an EventBus")
            subscribers = bus.subscribers(message_type)
            if not subscribers:
                raise ConfigurationError(f"{message_type.__qualname__} has no subscriber on {bus!r}")
            return tuple((s, _deliver_to(bus, s)) for s in subscribers)
        if not issubclass(message_type, Command):
            raise ConfigurationError(f"{name!r} maps to {message_type!r}, not a Command, on {bus!r}")
        if message_type not in bus.routes:
            raise ConfigurationError(f"{message_type.__qualname__} has no route on {bus!r}")
        return ((name, bus.execute),)

    @property
    def queue(self) -> str:
        """The queue this consumer reads."""
        return self._queue

    @property
    def database(self) -> Database:
        """The database this consumer's subscribers and inbox use."""
        return self._database

    @property
    def transport(self) -> Transport:
        """The transport this consumer receives from."""
        return self._transport

    @property
    def observer(self) -> Observer:
        """What this consumer reports to (`NO_OBSERVER` unless one was given)."""
        return self._observer

    @property
    def running(self) -> bool:
        """True while `run` is consuming its queue (its liveness, for a readiness check)."""
        return self._started.is_set()

    async def create_tables(self) -> None:
        """Create the inbox (and the other event tables) in this consumer's schema."""
        await create_event_tables(self._database, self._schema)

    async def missing_tables(self) -> list[str]:
        """Return the names of the event tables this consumer's schema lacks (empty: ready to run)."""
        return await missing_event_tables(self._database, self._schema)

    async def purge_inbox(self, older_than: float = 7 * 24 * 3600.0, *, batch_size: int | None = None) -> int:
        """Delete inbox rows older than `older_than` seconds; return how many.

        A message redelivered after its inbox rows were purged runs again: keep them longer than any
        redelivery can take (days, not minutes). The inbox is shared by every consumer of the schema.
        With `batch_size`, rows go in transactions of at most that many, skipping locked rows.
        """
        inbox = self._inbox
        cutoff = time.time() - older_than
        return await purge_in_batches(
            self._database,
            inbox,
            sa.tuple_(inbox.c.message_id, inbox.c.subscriber),
            inbox.c.handled_at < cutoff,
            batch_size,
        )

    async def started(self) -> None:
        """Wait until the queue is declared, bound and being consumed."""
        await self._started.wait()

    async def run(self) -> None:
        """Consume until `stop`; batches still being handled then finish (or are cut off) first."""
        self._receiver = asyncio.current_task()
        self._stopping.clear()
        self._waiting.clear()
        workers: list[asyncio.Task[None]] = []
        try:
            async with self._transport.consume(
                self._queue, tuple(self._types), prefetch=self._prefetch
            ) as deliveries:
                workers = [asyncio.create_task(self._work()) for _ in range(self._concurrency)]
                self._workers = set(workers)
                self._started.set()
                async for delivery in deliveries:
                    if self._stopping.is_set():
                        continue  # left unsettled: back to the queue when the channel closes
                    self._waiting.append(delivery)
                    self._arrived.set()
        except asyncio.CancelledError:
            if self._receiver is not None:  # cancelled from outside, not by stop()
                raise
        finally:
            self._started.clear()
            for worker in workers:
                worker.cancel()  # only running when run() itself was cancelled: what is unacked comes back
            if workers:
                await asyncio.gather(*workers, return_exceptions=True)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages; let the batches in hand finish for up to `grace` seconds, then cut them off.

        A batch cut off commits the messages it had finished (and acknowledges them) and rolls back
        the one it was in; what was not acknowledged goes back to the queue and is delivered again.
        """
        receiver, self._receiver = self._receiver, None
        if receiver is None:
            return
        self._stopping.set()  # take no more; the channel stays open so those in hand can ack
        self._arrived.set()
        workers = set(self._workers)
        if workers:
            _, late = await asyncio.wait(workers, timeout=grace)
            for worker in late:
                worker.cancel()
            if late:
                await asyncio.wait(late)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver

    async def _take(self) -> list[Delivery]:
        """Wait for deliveries; take those waiting, up to `batch_size` (none once stopping).

        One worker waits at a time, so deliveries that arrive together go into one batch.
        """
        async with self._taking:
            waiting = self._waiting
            while not waiting:
                if self._stopping.is_set():
                    return []
                self._arrived.clear()
                await self._arrived.wait()
            if self._stopping.is_set():
                return []
            return [waiting.popleft() for _ in range(min(len(waiting), self._batch_size))]

    async def _work(self) -> None:
        while batch := await self._take():
            try:
                await self._handle_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
                self._logger.error("batch_not_settled", messages=len(batch), **loggable_exception(exc))  # noqa: TRY400 - loggable_exception

    async def _handle_batch(self, deliveries: list[Delivery]) -> None:
        pending: list[_Message] = []
        by_id: dict[str, _Message] = {}
        for delivery in deliveries:
            opened = await self._open(delivery)
            if opened is None:
                continue
            same = by_id.get(opened.message_id)
            if same is not None:
                same.deliveries.append(delivery)  # a copy: settled with the first
                continue
            by_id[opened.message_id] = opened
            pending.append(opened)
        while pending:
            if self._stopping.is_set() and pending[0].failures:
                return  # a retry would outlive stop(): unsettled, so delivered again
            round_ = await self._apply(pending)
            await self._settle(round_)
            if round_.retry is None:
                return
            self._observer.retried(round_.retry.envelope, self._queue)
            delay = min(self._max_backoff, self._backoff * 2 ** (round_.retry.failures - 1))
            with contextlib.suppress(TimeoutError):  # stop() cuts the wait short
                await asyncio.wait_for(self._stopping.wait(), random.uniform(0, delay))  # noqa: S311 - jitter
            pending = [round_.retry, *round_.rest]

    async def _open(self, delivery: Delivery) -> _Message | None:
        """Read a delivery's message; dead-letter it at once when it cannot be read."""
        envelope = delivery.envelope
        try:
            if not envelope.message_id:
                raise ValueError("a message without an id cannot be deduplicated")  # noqa: TRY301
            message = open_envelope(envelope, self._types[envelope.name], self._converter)
        except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
            log = self._log(envelope)
            log.error("message_unreadable", **loggable_exception(exc))  # noqa: TRY400 - loggable_exception
            await self._report_dead(envelope, "unreadable")
            await _settle_one(delivery.dead_letter, self._logger, envelope.message_id)
            self._observer.dead_lettered(envelope, self._queue)
            return None
        return _Message(delivery, message, self._targets.get(envelope.name, ()))

    async def _apply(self, pending: list[_Message]) -> _Round:
        """Run `pending` in one transaction, each subscriber in a savepoint; stop at a retry.

        Cancelled (by `stop`) in the middle, it rolls back the subscriber it was in, commits what
        finished, settles it, and lets the cancellation through.
        """
        round_ = _Round()
        left: dict[str, tuple[Target, ...]] = {}  # the subscribers that failed, per failed message
        cancelled: asyncio.CancelledError | None = None
        try:
            async with self._database.transaction() as session:
                claimed = await self._claim(session, pending)
                unfinished: list[tuple[str, str]] = []  # claimed rows whose subscriber did not commit
                for index, item in enumerate(pending):
                    message_id = item.message_id
                    if cancelled is not None or round_.retry is not None:
                        unfinished += [(message_id, s) for s, _ in item.targets if (message_id, s) in claimed]
                        continue
                    with consume_span(item.name, message_id, item.envelope.trace_context, self._queue):
                        failed, retryable, cancelled = await self._run_message(item, claimed)
                    unfinished += [(message_id, s) for s, _ in failed]
                    if cancelled is not None:
                        continue
                    if not failed:
                        round_.done.append(item)
                        continue
                    left[message_id] = tuple(failed)
                    if item.failures + 1 >= self._max_attempts or not retryable:
                        round_.dead.append(item)
                        reason = f"failed {item.failures + 1} time(s)" if retryable else "not retryable"
                        await self._report_dead(item.envelope, reason)
                        item.reported = True
                    else:
                        round_.retry = item
                        round_.rest = pending[index + 1 :]
                if unfinished:
                    await self._unclaim(session, unfinished)
        except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
            # The transaction itself failed (the database is down, the COMMIT failed): nothing of
            # this round committed, and every message in it counts one failed attempt.
            # Logged without its traceback: it repeats on every retry for as long as an outage lasts,
            # and rendering a traceback each time would slow the whole process down.
            summary = loggable_exception(exc).get("database_error")
            self._logger.warning(
                "batch_rolled_back",
                messages=len(pending),
                error_type=type(exc).__name__,
                database_error=summary,
            )
            return self._all_failed(pending)
        for item in (*round_.dead, *([round_.retry] if round_.retry is not None else ())):
            item.targets = left[item.message_id]  # committed: the others are done for good
            item.failures += 1
        if cancelled is not None:
            await self._settle(round_)
            raise cancelled
        return round_

    async def _run_message(
        self, item: _Message, claimed: set[tuple[str, str]]
    ) -> tuple[list[Target], bool, asyncio.CancelledError | None]:
        """Run the claimed subscribers of one message, each in a savepoint.

        Return those that failed, whether every one of those may be retried, and the cancellation
        that cut the message off (then the subscriber it was in, and those after, count as failed).
        """
        failed: list[Target] = []
        retryable = True
        cancelled: asyncio.CancelledError | None = None
        for target in item.targets:
            if (item.message_id, target[0]) not in claimed:
                self._observer.duplicate(self._queue, target[0])
                continue  # handled before: a redelivery
            if cancelled is None:
                try:
                    status = await self._run_one(item, target)
                except asyncio.CancelledError as cancellation:
                    cancelled, status = cancellation, OperationStatus.FAILED
                if status is None:
                    continue
                retryable = retryable and status in _RETRYABLE
            failed.append(target)
        return failed, retryable, cancelled

    def _all_failed(self, pending: list[_Message]) -> _Round:
        round_ = _Round()
        for item in pending:
            item.failures += 1
            item.reported = False  # its hooks' savepoints rolled back with the transaction
            if item.failures >= self._max_attempts:
                round_.dead.append(item)
            elif round_.retry is None:
                round_.retry = item
            else:
                round_.rest.append(item)
        return round_

    async def _run_one(self, item: _Message, target: Target) -> OperationStatus | None:
        """Run one subscriber in a savepoint; return None when it committed, else its failure status."""
        subscriber, run = target
        block = self._database.transaction()
        try:
            async with block:
                result = await run(item.message, item.context)
                if result.is_failure:
                    block.rollback_only = True  # the savepoint rolls back; the batch goes on
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
            log = self._log(item.envelope)
            log.error("subscriber_raised", subscriber=subscriber, **loggable_exception(exc))  # noqa: TRY400 - loggable_exception
            return OperationStatus.FAILED
        if result.is_failure:
            self._log(item.envelope).warning(
                "subscriber_failed", subscriber=subscriber, status=str(result.status)
            )
            return result.status
        return None

    async def _claim(self, session: Any, pending: list[_Message]) -> set[tuple[str, str]]:
        """Insert the batch's inbox rows in one statement; return those that were not there already.

        A row another transaction holds makes this wait for it (a redelivery handled concurrently).
        Rows go in sorted so that two batches sharing messages lock them in the same order.
        """
        now = time.time()
        keys = sorted({(item.message_id, subscriber) for item in pending for subscriber, _ in item.targets})
        if not keys:
            return set()
        tenants = {item.message_id: item.envelope.tenant for item in pending}
        inbox = self._inbox
        statement = (
            self._insert(inbox)
            .values(
                [{"message_id": m, "subscriber": s, "handled_at": now, "tenant": tenants[m]} for m, s in keys]
            )
            .on_conflict_do_nothing()
            .returning(inbox.c.message_id, inbox.c.subscriber)
        )
        return {(row[0], row[1]) for row in await session.execute(statement)}

    async def _unclaim(self, session: Any, keys: list[tuple[str, str]]) -> None:
        """Delete the inbox rows of subscribers that did not commit, so a redelivery runs them."""
        inbox = self._inbox
        await session.execute(
            sa.delete(inbox).where(sa.tuple_(inbox.c.message_id, inbox.c.subscriber).in_(keys))
        )

    async def _settle(self, round_: _Round) -> None:
        """After the commit: acknowledge what is done, dead-letter what failed for good."""
        logger = self._logger
        observer = self._observer
        for item in round_.done:
            for delivery in item.deliveries:
                await _settle_one(delivery.ack, logger, item.message_id)
            observer.processed(item.envelope, self._queue)
        for item in round_.dead:
            self._log(item.envelope).error(
                "message_dead_lettered",
                attempts=item.failures,
                subscribers=[name for name, _ in item.targets],
            )
            if not item.reported:
                await self._report_dead(item.envelope, f"failed {item.failures} time(s)")
            for delivery in item.deliveries:
                await _settle_one(delivery.dead_letter, logger, item.message_id)
            observer.dead_lettered(item.envelope, self._queue)

    async def _report_dead(self, envelope: Envelope, reason: str) -> None:
        """Tell the dead-letter hooks, in a savepoint of the open transaction (or in their own)."""
        if self._dead_letter_hooks:
            await report_dead_letter(self._dead_letter_hooks, self._database, envelope, reason, self._logger)

    def _log(self, envelope: Envelope) -> Any:
        """Return the logger bound to one message (and its tenant, if any): made only when needed."""
        log = self._logger.bind(
            message_id=envelope.message_id, message_name=envelope.name, correlation_id=envelope.correlation_id
        )
        return log if envelope.tenant is None else log.bind(tenant=envelope.tenant)

    def __repr__(self) -> str:
        return f"Consumer(queue={self._queue!r}, types={sorted(self._types)!r})"


async def _settle_one(settle: Callable[[], Awaitable[None]], logger: Any, message_id: str) -> None:
    try:
        await settle()
    except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
        logger.error("delivery_not_settled", message_id=message_id, **loggable_exception(exc))  # noqa: TRY400 - loggable_exception


def _deliver_to(bus: EventBus, subscriber: str) -> Runner:
    async def run(event: Any, context: Context) -> Result[Any]:
        return await bus.deliver(event, subscriber, context)

    return run
