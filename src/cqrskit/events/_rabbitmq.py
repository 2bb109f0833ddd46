"""`RabbitMQTransport`: the `Transport` for RabbitMQ, through aio-pika (extra ``rabbitmq``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import aio_pika.abc

from cqrskit.events._envelope import Envelope

__all__ = ["RabbitMQTransport"]

_HEADER = "x-cqrskit"


class _RabbitDelivery:
    __slots__ = ("_envelope", "_message")

    def __init__(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self._message = message
        raw = message.headers.get(_HEADER)
        try:
            headers = json.loads(raw) if isinstance(raw, (str, bytes)) else {}
        except ValueError:
            headers = {}
        self._envelope = Envelope.from_parts(
            message.message_id or "", message.type or "", message.body, headers
        )

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

    def __repr__(self) -> str:
        return f"RabbitMQTransport(exchange={self._exchange_name!r})"


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
