"""What is particular to `NatsTransport` (the conformance suite covers what every transport shares)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import attrs
import pytest

from cqrskit import ConfigurationError, Principal
from cqrskit.events import Envelope, NatsTransport

pytestmark = [pytest.mark.nats]


@pytest.fixture
async def transport(nats_url: str, unique_name: str) -> AsyncIterator[NatsTransport]:
    """A stream of this test's own (short redelivery and attempt limits), deleted after it."""
    transport = NatsTransport(nats_url, stream=unique_name, ack_wait=1.0, max_deliveries=2)
    try:
        yield transport
    finally:
        await transport.delete(f"{unique_name}.q", streams=True)
        await transport.close()


def envelope(message_id: str, name: str = "Happened", key: str | None = "k") -> Envelope:
    return Envelope(
        message_id,
        name,
        b'{"n": 1}',
        key=key,
        correlation_id="corr",
        causation_id="cause",
        principal=Principal("alice", ("users:read",), ("member",)),
        created_at=123.5,
    )


async def test_a_message_that_is_never_settled_goes_to_the_dead_letters(
    transport: NatsTransport, unique_name: str
) -> None:
    """Delivered max_deliveries times to consumers that die without settling it: then a dead letter."""
    queue = f"{unique_name}.q"
    sent = envelope("m1")
    async with transport.consume(queue, ["Happened"], prefetch=1):
        pass  # the queue exists from now on
    await transport.publish([sent])
    for _ in range(2):  # two consumers that "die": their connection closes with the delivery in hand
        copy = NatsTransport(transport.url, stream=unique_name, ack_wait=1.0, max_deliveries=2)
        async with copy.consume(queue, ["Happened"], prefetch=1) as deliveries:
            delivery = await anext(aiter(deliveries))
            assert delivery.envelope == sent
            await copy.close()  # unsettled, and no negative acknowledgement: redelivered after ack_wait
    async with transport.consume(queue, ["Happened"], prefetch=1) as deliveries:
        waiting = asyncio.ensure_future(anext(aiter(deliveries)))
        for _ in range(300):
            if await transport.dead_letters(queue):
                break
            await asyncio.sleep(0.05)
        waiting.cancel()
    dead = await transport.dead_letters(queue)
    assert [d.envelope for d in dead] == [sent]  # every header kept
    assert dead[0].reason == "delivered 2 times"


async def test_only_the_names_a_queue_is_bound_to_reach_it(
    transport: NatsTransport, unique_name: str
) -> None:
    """Messages of other names are published to the same stream but never delivered to the queue."""
    queue = f"{unique_name}.q"
    async with transport.consume(queue, ["Happened", "Other"], prefetch=10) as deliveries:
        await transport.publish([envelope("a", "Unbound"), envelope("b"), envelope("c", "Other")])
        received = [await anext(aiter(deliveries)), await anext(aiter(deliveries))]
        for delivery in received:
            await delivery.ack()
    assert [d.envelope.message_id for d in received] == ["b", "c"]


async def test_leaving_the_block_gives_unsettled_deliveries_back_at_once(
    nats_url: str, transport: NatsTransport, unique_name: str
) -> None:
    """No wait for ack_wait: the next consumer gets the message as soon as the first one leaves."""
    slow = NatsTransport(nats_url, stream=unique_name, ack_wait=60.0)
    queue = f"{unique_name}.q"
    try:
        async with slow.consume(queue, ["Happened"], prefetch=1) as deliveries:
            await slow.publish([envelope("x")])
            first = await anext(aiter(deliveries))
        async with slow.consume(queue, ["Happened"], prefetch=1) as deliveries:
            again = await asyncio.wait_for(anext(aiter(deliveries)), 20)
            await again.ack()
        assert again.envelope == first.envelope
    finally:
        await slow.close()


def test_a_stream_name_with_a_dot_is_refused() -> None:
    """JetStream stream names take letters, digits, _ and - only: say so at construction."""
    with pytest.raises(ConfigurationError, match="stream name"):
        NatsTransport("nats://localhost", stream="shop.events")


def test_queue_names_become_valid_consumer_names() -> None:
    """A queue name with dots maps to a distinct, valid durable consumer name."""
    transport = NatsTransport("nats://localhost", stream="shop")
    assert transport.consumer_name("user-stats") == "user-stats"
    assert transport.consumer_name("shop.user-stats") != transport.consumer_name("shop_user-stats")
    assert "." not in transport.consumer_name("shop.user-stats")


async def test_dead_letters_are_replayed_with_their_headers_and_purged(
    transport: NatsTransport, unique_name: str
) -> None:
    """Two rejected messages: one replayed (same id, every header), the other purged."""
    queue = f"{unique_name}.q"
    first = attrs.evolve(
        envelope("d1"), trace_context={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    )
    second = envelope("d2", key="other")
    async with transport.consume(queue, ["Happened"], prefetch=2) as deliveries:
        await transport.publish([first, second])
        iterator = aiter(deliveries)
        for _ in range(2):
            await (await anext(iterator)).dead_letter()
        dead = await transport.dead_letters(queue)
        assert [d.envelope for d in dead] == [first, second]
        assert dead[0].reason == "rejected"
        assert dead[0].dead_lettered_at is not None
        assert [d.message_id for d in await transport.dead_letters(queue, limit=1)] == ["d1"]

        assert await transport.replay(queue, message_ids=["d1"]) == 1
        again = await anext(iterator)
        assert again.envelope == first
        assert again.envelope.trace_context == first.trace_context
        await again.ack()
    assert [d.message_id for d in await transport.dead_letters(queue)] == ["d2"]
    assert await transport.purge(queue, where=lambda d: d.envelope.key == "other") == 1
    assert await transport.dead_letters(queue) == []
