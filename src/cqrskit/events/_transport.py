"""The contract between the outbox, the consumer and a message broker: `Transport` and `Delivery`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from cqrskit.events._envelope import Envelope

__all__ = ["Delivery", "Transport"]


class Delivery(Protocol):
    """One message received from a queue, not yet settled: acknowledge, dead-letter or release it."""

    @property
    def envelope(self) -> Envelope:
        """The message as it was published."""
        ...

    async def ack(self) -> None:
        """Settle it as handled: the broker forgets it."""
        ...

    async def dead_letter(self) -> None:
        """Settle it as unhandleable: the broker moves it to the queue's dead-letter queue."""
        ...

    async def release(self) -> None:
        """Give it back to the queue for another attempt, here or in another consumer."""
        ...


class Transport(Protocol):
    """A message broker as cqrskit uses it; `RabbitMQTransport` is one.

    Implement it to add another broker: the outbox relay, `CommandSender` and `Consumer` only
    ever talk to this protocol.
    """

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Send `envelopes`, routed by their `name`; return once the broker has confirmed every one.

        Envelopes that share a `key` must reach the broker in the order given.
        """
        ...

    def consume(
        self, queue: str, names: Collection[str], *, prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        """Receive the messages routed to `names` through the durable `queue`.

        At most `prefetch` deliveries are unsettled at a time; leaving the ``async with`` block
        gives every unsettled one back to the queue.
        """
        ...
