"""The transport conformance suite (`cqrskit.events.conformance`) on RabbitMQ and on NATS JetStream.

A third transport plugs in with one more harness class and one more ``params`` entry below.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import pytest

from cqrskit.events import Envelope, NatsTransport, RabbitMQTransport, Transport
from cqrskit.events.conformance import TransportConformance, TransportHarness

pytestmark = [pytest.mark.postgres]


class RabbitMQHarness(TransportHarness):
    """RabbitMQ: an exchange of the test's own; a closed connection requeues what it had not settled."""

    def __init__(self, database_url: str, url: str, name: str) -> None:
        super().__init__(database_url)
        self.url, self.name = url, name
        self.opened: list[RabbitMQTransport] = []

    async def open(self) -> Transport:
        transport = RabbitMQTransport(self.url, exchange=self.name)
        self.opened.append(transport)
        return transport

    async def kill(self, transport: Transport) -> None:
        assert isinstance(transport, RabbitMQTransport)
        await transport.close()

    async def dead_letters(self, queue: str) -> list[Envelope]:
        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel()
            dead = await channel.declare_queue(f"{queue}.dead-letter", durable=True)
            found = []
            # Read without acknowledging: closing the channel puts them all back, in order.
            while (message := await dead.get(no_ack=False, fail=False)) is not None:
                headers: Any = json.loads(message.headers.get("x-cqrskit") or "{}")  # type: ignore[arg-type]
                found.append(
                    Envelope.from_parts(message.message_id or "", message.type or "", message.body, headers)
                )
            return found
        finally:
            await connection.close()

    async def close(self, queues: Sequence[str]) -> None:
        cleaner = RabbitMQTransport(self.url, exchange=self.name)
        try:
            await cleaner.delete(*queues, exchanges=True)
        finally:
            await cleaner.close()
            for transport in self.opened:
                await transport.close()


class NatsHarness(TransportHarness):
    """NATS JetStream: a stream of the test's own; a dead connection's deliveries come back after 2 s."""

    def __init__(self, database_url: str, url: str, name: str) -> None:
        super().__init__(database_url)
        self.url, self.name = url, name
        self.opened: list[NatsTransport] = []

    def _new(self) -> NatsTransport:
        transport = NatsTransport(self.url, stream=self.name, ack_wait=2.0)
        self.opened.append(transport)
        return transport

    async def open(self) -> Transport:
        return self._new()

    async def kill(self, transport: Transport) -> None:
        assert isinstance(transport, NatsTransport)
        await transport.close()

    async def dead_letters(self, queue: str) -> list[Envelope]:
        return [dead.envelope for dead in await self._new().dead_letters(queue)]

    async def close(self, queues: Sequence[str]) -> None:
        try:
            await self._new().delete(*queues, streams=True)
        finally:
            for transport in self.opened:
                await transport.close()


@pytest.fixture(
    params=[
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
async def transport_harness(
    request: pytest.FixtureRequest, postgres_url: str, unique_name: str
) -> AsyncIterator[TransportHarness]:
    """One harness per broker; each skips (or fails in CI) when its broker is not there."""
    if request.param == "rabbitmq":
        yield RabbitMQHarness(postgres_url, request.getfixturevalue("rabbitmq_url"), unique_name)
    else:
        yield NatsHarness(postgres_url, request.getfixturevalue("nats_url"), unique_name)


class TestTransportConformance(TransportConformance):
    """Every test of the suite, once per broker."""
