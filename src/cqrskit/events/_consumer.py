"""`Consumer`: broker messages back into events or commands, handled effectively once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import cattrs
import sqlalchemy as sa
import structlog

from cqrskit._context import Context
from cqrskit._errors import ConfigurationError
from cqrskit._loggable import loggable_exception
from cqrskit._messages import Command
from cqrskit._results import Result
from cqrskit._status import OperationStatus
from cqrskit.events._bus import EventBus
from cqrskit.events._envelope import open_envelope
from cqrskit.events._event import Event
from cqrskit.events._tables import create_event_tables, event_tables, insert_for
from cqrskit.events._transport import Delivery

if TYPE_CHECKING:
    from cqrskit._bus import CommandBus
    from cqrskit.events._transport import Transport
    from cqrskit.sqlalchemy._database import Database

__all__ = ["Consumer"]

_RETRYABLE = frozenset({OperationStatus.FAILED, OperationStatus.TIMEOUT, OperationStatus.UNAVAILABLE})

Runner = Callable[[Any, Context], Awaitable[Result[Any]]]


class _RolledBack(Exception):  # noqa: N818 - a control-flow signal, never seen outside this module
    def __init__(self, result: Result[Any]) -> None:
        self.result = result


class Consumer:
    """Receives messages from one queue and runs them through an `EventBus` or a `CommandBus`.

    `types` maps each name a message travels under to its class (``{"UserCreated": UserCreated}``);
    the consumer binds `queue` to those names and structures payloads back with cattrs. For an event,
    each subscriber runs in its own ``database.transaction()`` together with an inbox row keyed by
    (message id, subscriber name): a message delivered again re-runs only the subscribers that had
    not committed, so each one's effects happen once. A command is one subscriber (named after
    the command) and its Result goes nowhere but the log.

    The message is acknowledged after every subscriber has committed. A subscriber that raises or
    returns FAILED or TIMEOUT is retried with exponential backoff and full jitter; after
    `max_attempts`, or at once for any other failure status (a validation error will not heal), the
    message goes to the queue's dead-letter queue and the consumer carries on with the next one.

    ``concurrency=1`` (the default) handles one message at a time, in queue order: what per-key
    ordering needs. Run it with ``await consumer.run()`` and end it with `stop`.
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
        converter: cattrs.Converter | None = None,
        logger: Any = None,
    ) -> None:
        if max_attempts < 1:
            raise ConfigurationError(f"max_attempts counts the first attempt: at least 1, got {max_attempts}")
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
        self._converter = converter
        self._logger = logger if logger is not None else structlog.get_logger("cqrskit.events")
        self._targets = {name: self._targets_for(name, t) for name, t in self._types.items()}
        self._receiver: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()

    def _targets_for(self, name: str, message_type: type) -> tuple[tuple[str, Runner], ...]:
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

    async def create_tables(self) -> None:
        """Create the inbox (and the other event tables) in this consumer's schema."""
        await create_event_tables(self._database, self._schema)

    async def purge_inbox(self, older_than: float = 7 * 24 * 3600.0) -> int:
        """Delete inbox rows older than `older_than` seconds; return how many.

        A message redelivered after its inbox rows were purged runs again: keep them longer than any
        redelivery can take (days, not minutes). The inbox is shared by every consumer of the schema.
        """
        cutoff = time.time() - older_than
        async with self._database.transaction() as session:
            result = await session.execute(sa.delete(self._inbox).where(self._inbox.c.handled_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    async def started(self) -> None:
        """Wait until the queue is declared, bound and being consumed."""
        await self._started.wait()

    async def run(self) -> None:
        """Consume until `stop`; handlers still running then finish (or are cancelled) first."""
        self._receiver = asyncio.current_task()
        self._stopping.clear()
        slots = asyncio.Semaphore(self._concurrency)
        try:
            async with self._transport.consume(
                self._queue, tuple(self._types), prefetch=self._prefetch
            ) as deliveries:
                self._started.set()
                async for delivery in deliveries:
                    if self._stopping.is_set():
                        continue  # left unsettled: back to the queue when the channel closes
                    await slots.acquire()
                    if self._stopping.is_set():
                        slots.release()
                        continue
                    task = asyncio.create_task(self._handle(delivery))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                    task.add_done_callback(lambda _: slots.release())
        except asyncio.CancelledError:
            if self._receiver is not None:  # cancelled from outside, not by stop()
                raise
        finally:
            self._started.clear()
            for task in tuple(self._in_flight):
                task.cancel()  # only left when run() itself was cancelled: unacked, so redelivered

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages; let those in hand finish for up to `grace` seconds, cancel the rest.

        What was not acknowledged goes back to the queue and is delivered again.
        """
        receiver, self._receiver = self._receiver, None
        if receiver is None:
            return
        self._stopping.set()  # take no more; the channel stays open so those in hand can ack
        in_flight = set(self._in_flight)
        if in_flight:
            _, late = await asyncio.wait(in_flight, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver

    async def _handle(self, delivery: Delivery) -> None:
        try:
            await self._handle_delivery(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
            self._logger.error(  # noqa: TRY400 - the traceback comes from loggable_exception
                "delivery_not_settled", message_id=delivery.envelope.message_id, **loggable_exception(exc)
            )

    async def _handle_delivery(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        log = self._logger.bind(
            message_id=envelope.message_id, message_name=envelope.name, correlation_id=envelope.correlation_id
        )
        targets = self._targets.get(envelope.name, ())
        try:
            if not envelope.message_id:
                raise ValueError("a message without an id cannot be deduplicated")  # noqa: TRY301
            message = open_envelope(envelope, self._types[envelope.name], self._converter)
        except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
            log.error("message_unreadable", **loggable_exception(exc))  # noqa: TRY400 - the traceback comes from loggable_exception
            await delivery.dead_letter()
            return
        context = envelope.context()
        remaining = targets
        attempt = 0
        while True:
            attempt += 1
            failed: list[tuple[str, Runner]] = []
            retryable = True
            for subscriber, run in remaining:
                status = await self._run_once(envelope.message_id, subscriber, run, message, context, log=log)
                if status is not None:
                    failed.append((subscriber, run))
                    retryable = retryable and status in _RETRYABLE
            if not failed:
                await delivery.ack()
                return
            if attempt >= self._max_attempts or not retryable:
                log.error(
                    "message_dead_lettered",
                    attempts=attempt,
                    subscribers=[name for name, _ in failed],
                )
                await delivery.dead_letter()
                return
            delay = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
            await asyncio.sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not cryptography
            remaining = tuple(failed)

    async def _run_once(
        self, message_id: str, subscriber: str, run: Runner, message: Any, context: Context, *, log: Any
    ) -> OperationStatus | None:
        """Run one subscriber with its inbox row; return None when done, else the failure status."""
        try:
            async with self._database.transaction() as session:
                if not await self._claim(session, message_id, subscriber):
                    return None  # handled before: a redelivery
                result = await run(message, context)
                if result.is_failure:
                    raise _RolledBack(result)  # noqa: TRY301 - leaving the block is what rolls back
        except _RolledBack as rolled_back:
            log.warning("subscriber_failed", subscriber=subscriber, status=str(rolled_back.result.status))
            return rolled_back.result.status
        except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
            log.error("subscriber_raised", subscriber=subscriber, **loggable_exception(exc))  # noqa: TRY400 - the traceback comes from loggable_exception
            return OperationStatus.FAILED
        return None

    async def _claim(self, session: Any, message_id: str, subscriber: str) -> bool:
        """Insert the inbox row; False when it is there already (waits for a concurrent holder)."""
        statement = (
            self._insert(self._inbox)
            .values(message_id=message_id, subscriber=subscriber, handled_at=time.time())
            .on_conflict_do_nothing()
            .returning(self._inbox.c.message_id)
        )
        return (await session.execute(statement)).first() is not None

    def __repr__(self) -> str:
        return f"Consumer(queue={self._queue!r}, types={sorted(self._types)!r})"


def _deliver_to(bus: EventBus, subscriber: str) -> Runner:
    async def run(event: Any, context: Context) -> Result[Any]:
        return await bus.deliver(event, subscriber, context)

    return run
