"""A worker of the onboarding example behind RabbitMQ that SIGKILLs itself at a chosen point when armed.

``python -m tests.onboarding.broker_worker DATABASE_URL SCHEMA RABBITMQ_URL EXCHANGE POINT ARM``
runs both consumers, the relay and the forwarder of `tests.onboarding.broker_app` until killed.
While the file ARM exists, the next time the worker reaches POINT it removes ARM and SIGKILLs itself:

- ``after_state``: a process step has written its instance row (INSERT or UPDATE), its transaction
  (the consumer's, with the inbox row and what the step sends) not yet committed;
- ``before_ack``: the consumer's transaction that took a process step (UserCreated, UserActivated,
  ActivationDeadline) has committed, and its delivery is not yet acknowledged: RabbitMQ delivers it
  again;
- ``after_publish``: the broker has confirmed a command the process sent, and the relay has not yet
  marked its outbox row: the relay publishes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Collection, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dependency_injector import providers

from cqrskit.events import Envelope, RabbitMQTransport
from tests.onboarding.broker_app import COMMANDS, configured

STEPS = frozenset({"UserCreated", "UserActivated", "ActivationDeadline"})  # what the process reacts to


class Arm:
    def __init__(self, point: str, path: Path) -> None:
        self.point = point
        self.path = path

    def fire(self, point: str) -> None:
        if point == self.point and self.path.exists():
            self.path.unlink()
            os.kill(os.getpid(), signal.SIGKILL)


class _Delivery:
    def __init__(self, inner: Any, arm: Arm) -> None:
        self.inner, self.arm = inner, arm

    @property
    def envelope(self) -> Envelope:
        return self.inner.envelope  # type: ignore[no-any-return]

    async def ack(self) -> None:
        if self.envelope.name in STEPS:
            self.arm.fire("before_ack")
        await self.inner.ack()

    async def dead_letter(self) -> None:
        await self.inner.dead_letter()

    async def release(self) -> None:
        await self.inner.release()


class KillingTransport:
    """RabbitMQ, with the two broker points of the crash test."""

    def __init__(self, inner: RabbitMQTransport, arm: Arm) -> None:
        self.inner, self.arm = inner, arm

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await self.inner.publish(envelopes)
        if any(e.name in COMMANDS for e in envelopes):
            self.arm.fire("after_publish")

    @contextlib.asynccontextmanager
    async def consume(self, queue: str, names: Collection[str], *, prefetch: int) -> AsyncIterator[Any]:
        async with self.inner.consume(queue, names, prefetch=prefetch) as deliveries:

            async def wrapped() -> AsyncIterator[_Delivery]:
                async for delivery in deliveries:
                    yield _Delivery(delivery, self.arm)

            yield wrapped()


async def main(argv: Sequence[str]) -> None:
    url, schema, rabbitmq_url, exchange, point, arm_path = argv
    arm = Arm(point, Path(arm_path))
    container = configured(url, schema, rabbitmq_url, exchange)
    container.transport.override(
        providers.Object(KillingTransport(RabbitMQTransport(rabbitmq_url, exchange=exchange), arm))
    )

    def watch(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.lstrip().upper()
        if "CQRSKIT_PROCESS_INSTANCES" in words and words.startswith(("INSERT", "UPDATE")):
            arm.fire("after_state")

    sa.event.listen(container.database().engine.sync_engine, "after_cursor_execute", watch)
    consumers = [container.event_consumer(), container.command_consumer()]
    tasks = [asyncio.create_task(consumer.run()) for consumer in consumers]
    for consumer in consumers:  # the queues exist before anything is published
        await asyncio.wait_for(consumer.started(), 60)
    loops = [container.relay(), container.forwarder()]
    tasks += [asyncio.create_task(loop.run()) for loop in loops]
    print("ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:7]))
