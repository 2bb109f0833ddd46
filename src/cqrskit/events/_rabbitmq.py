"""`RabbitMQTransport`: the `Transport` for RabbitMQ, through aio-pika (extra ``rabbitmq``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions

from cqrskit.events._dead_letters import DeadLetter, Selector, chosen
from cqrskit.events._envelope import Envelope

__all__ = ["RabbitMQTransport"]

_HEADER = "x-cqrskit"


def _envelope_of(message: aio_pika.abc.AbstractIncomingMessage) -> Envelope:
    raw = message.headers.get(_HEADER)
    try:
        headers = json.loads(raw) if isinstance(raw, (str, bytes)) else {}
    except ValueError:
        headers = {}
    return Envelope.from_parts(message.message_id or "", message.type or "", message.body, headers)


def _dead_letter_of(message: aio_pika.abc.AbstractIncomingMessage, queue: str) -> DeadLetter:
    """Read RabbitMQ's ``x-death`` header (why and when) next to the envelope."""
    reason: str | None = None
    when: float | None = None
    deaths = message.headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        first = deaths[0]
        reason = str(first.get("reason")) if first.get("reason") is not None else None
        stamp = first.get("time")
        if isinstance(stamp, dt.datetime):
            when = stamp.timestamp()
    return DeadLetter(_envelope_of(message), queue, reason, when)


class _RabbitDelivery:
    __slots__ = ("_envelope", "_message")

    def __init__(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self._message = message
        self._envelope = _envelope_of(message)

    @property
    def envelope(self) -> Envelope:
        return self._envelope

    async def ack(self) -> None:
        await self._message.ack()

    async def dead_letter(self) -> None:
        await self._message.reject(requeue=False)

    async def release(self) -> None:
        await self._message.nack(requeue=True)


class RabbitMQTransport:
    """Publishes to and consumes from RabbitMQ: a durable topic exchange, durable queues, dead letters.

    Messages are routed by their name (the event or command class name, or the name you gave it),
    published persistent with publisher confirms; ``publish`` returns only once RabbitMQ has
    confirmed every message. Each queue ``q`` a `Consumer` reads is declared durable, bound to the
    names it handles, and dead-letters into ``q.dead-letter`` through the ``<exchange>.dead-letter``
    exchange. Open it with ``async with`` or `connect`, and `close` it when done::

        transport = RabbitMQTransport("amqp://guest:guest@localhost/", exchange="shop")
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "cqrskit",
        dead_letter_exchange: str | None = None,
    ) -> None:
        self._url = url
        self._exchange_name = exchange
        self._dead_letter_exchange_name = dead_letter_exchange or f"{exchange}.dead-letter"
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._lock = asyncio.Lock()

    @property
    def exchange(self) -> str:
        """The name of the topic exchange messages are published to."""
        return self._exchange_name

    def dead_letter_queue(self, queue: str) -> str:
        """Return the name of the queue where `queue`'s dead letters land."""
        return f"{queue}.dead-letter"

    async def connect(self) -> None:
        """Connect and declare the exchange (done on first use when you do not call it)."""
        async with self._lock:
            if self._exchange is not None:
                return
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(self._url)
            self._channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await self._channel.declare_exchange(
                self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )

    async def close(self) -> None:
        """Close the connection; unsettled deliveries go back to their queues."""
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None:
            await connection.close()

    async def __aenter__(self) -> RabbitMQTransport:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _connected(self) -> tuple[aio_pika.abc.AbstractRobustConnection, aio_pika.abc.AbstractExchange]:
        if self._exchange is None:
            await self.connect()
        assert self._connection is not None  # noqa: S101 - set by connect()
        assert self._exchange is not None  # noqa: S101
        return self._connection, self._exchange

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Publish `envelopes` in the order given and wait for RabbitMQ's confirms, all pipelined.

        Every message is written to one channel, in order, before any confirm is awaited: RabbitMQ
        routes a channel's messages in the order they were sent, so one key's messages reach the
        queue in order while the confirms of the whole batch travel back together.
        """
        if not envelopes:
            return
        _, exchange = await self._connected()
        # gather() starts the publishes in the order given; each takes the channel's lock in turn
        # (first come, first served), so the frames go out in that order too.
        outcomes = await asyncio.gather(
            *(
                exchange.publish(_to_message(envelope), routing_key=envelope.name, mandatory=False)
                for envelope in envelopes
            ),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    @asynccontextmanager
    async def consume(
        self, queue: str, names: Collection[str], *, prefetch: int = 10
    ) -> AsyncIterator[AsyncIterator[_RabbitDelivery]]:
        """Declare `queue` (durable, with its dead-letter queue), bind it to `names`, and yield deliveries.

        Leaving the block closes the consuming channel: RabbitMQ requeues what was not settled.
        """
        connection, _ = await self._connected()
        channel = await connection.channel()
        try:
            await channel.set_qos(prefetch_count=prefetch)
            exchange = await channel.declare_exchange(
                self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            dead_exchange = await channel.declare_exchange(
                self._dead_letter_exchange_name, aio_pika.ExchangeType.DIRECT, durable=True
            )
            dead_queue = await channel.declare_queue(self.dead_letter_queue(queue), durable=True)
            await dead_queue.bind(dead_exchange, routing_key=queue)
            arguments: dict[str, Any] = {
                "x-dead-letter-exchange": self._dead_letter_exchange_name,
                "x-dead-letter-routing-key": queue,
            }
            declared = await channel.declare_queue(queue, durable=True, arguments=arguments)
            for name in names:
                await declared.bind(exchange, routing_key=name)
            async with declared.iterator() as iterator:
                yield _deliveries(iterator)
        finally:
            if not channel.is_closed:
                await channel.close()

    async def delete(self, *queues: str, exchanges: bool = False) -> None:
        """Delete `queues` and their dead-letter queues, and the exchanges too when `exchanges` is True.

        Meant for tests and tear-down scripts that made names of their own.
        """
        connection, _ = await self._connected()
        channel = await connection.channel()
        try:
            for queue in queues:
                await channel.queue_delete(queue)
                await channel.queue_delete(self.dead_letter_queue(queue))
            if exchanges:
                await channel.exchange_delete(self._exchange_name)
                await channel.exchange_delete(self._dead_letter_exchange_name)
                self._exchange = None
        finally:
            await channel.close()

    async def ping(self) -> None:
        """Raise unless the connection to RabbitMQ is open (connecting first if it never was)."""
        connection, _ = await self._connected()
        if connection.is_closed or not await _opens_a_channel(connection):
            raise ConnectionError("RabbitMQ connection is not open")

    async def dead_letters(self, queue: str, *, limit: int | None = None) -> list[DeadLetter]:
        """Return `queue`'s dead letters, oldest first, at most `limit`; they stay in the queue.

        They are read from ``<queue>.dead-letter`` without settling them, and go back in their order
        when the reading channel closes.
        """
        found: list[DeadLetter] = []

        async def keep(dead: DeadLetter, _: aio_pika.abc.AbstractIncomingMessage) -> None:
            found.append(dead)

        await self._walk_dead_letters(queue, keep, limit=limit)
        return found

    async def replay(
        self, queue: str, *, message_ids: Collection[str] | None = None, where: Selector | None = None
    ) -> int:
        """Publish the chosen dead letters to `queue` again (its own, through the default exchange).

        Each keeps its id and every header; it is removed from the dead letters once RabbitMQ has
        confirmed the copy. Return how many were replayed.
        """
        connection, _ = await self._connected()
        channel = await connection.channel(publisher_confirms=True)
        try:
            await channel.declare_queue(queue, passive=True)  # a replay into no queue would be lost
            replayed = 0

            async def send_back(dead: DeadLetter, message: aio_pika.abc.AbstractIncomingMessage) -> None:
                nonlocal replayed
                if chosen(dead, message_ids, where):
                    await channel.default_exchange.publish(_to_message(dead.envelope), routing_key=queue)
                    await message.ack()
                    replayed += 1

            await self._walk_dead_letters(queue, send_back)
        finally:
            if not channel.is_closed:
                await channel.close()
        return replayed

    async def purge(
        self, queue: str, *, message_ids: Collection[str] | None = None, where: Selector | None = None
    ) -> int:
        """Remove the chosen dead letters of `queue` for good; return how many."""
        purged = 0

        async def drop(dead: DeadLetter, message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal purged
            if chosen(dead, message_ids, where):
                await message.ack()
                purged += 1

        await self._walk_dead_letters(queue, drop)
        return purged

    async def _walk_dead_letters(
        self,
        queue: str,
        visit: Callable[[DeadLetter, aio_pika.abc.AbstractIncomingMessage], Awaitable[None]],
        *,
        limit: int | None = None,
    ) -> None:
        """Get every dead letter of `queue` once, unsettled; those `visit` leaves go back on close."""
        connection, _ = await self._connected()
        channel = await connection.channel()
        try:
            try:
                # Passive: the dead-letter queue is read as it is, whatever arguments it was declared with.
                dead_queue = await channel.declare_queue(self.dead_letter_queue(queue), passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return  # no consumer ever declared it: no dead letters
            # As many as were there when the walk began: one replayed and dead-lettered again meanwhile
            # waits for the next walk.
            there = dead_queue.declaration_result.message_count or 0
            limit = there if limit is None else min(limit, there)
            seen = 0
            while seen < limit:
                message = await dead_queue.get(no_ack=False, fail=False)
                if message is None:
                    return
                seen += 1
                await visit(_dead_letter_of(message, queue), message)
        finally:
            if not channel.is_closed:
                await channel.close()

    def __repr__(self) -> str:
        return f"RabbitMQTransport(exchange={self._exchange_name!r})"


async def _opens_a_channel(connection: aio_pika.abc.AbstractRobustConnection) -> bool:
    try:
        channel = await asyncio.wait_for(connection.channel(), 5.0)
    except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
        return False
    with contextlib.suppress(Exception):
        await channel.close()
    return True


async def _deliveries(iterator: aio_pika.abc.AbstractQueueIterator) -> AsyncIterator[_RabbitDelivery]:
    async for message in iterator:
        yield _RabbitDelivery(message)


def _to_message(envelope: Envelope) -> aio_pika.Message:
    return aio_pika.Message(
        envelope.payload,
        message_id=envelope.message_id,
        type=envelope.name,
        correlation_id=envelope.correlation_id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={_HEADER: json.dumps(envelope.headers(), separators=(",", ":"))},
    )
