"""A relay run as a separate process by the relay tests (several at once, or the crash test).

With ``RELAY_DIE_AFTER_PUBLISH=1`` it kills itself with SIGKILL right after the broker has confirmed
its first batch and before the rows are marked published: the crash the outbox must survive.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from typing import Any

from cqrskit.events import Envelope, OutboxRelay, RabbitMQTransport
from cqrskit.sqlalchemy import Database


class DieAfterPublish:
    """A transport that publishes, waits for the confirms, then SIGKILLs its own process."""

    def __init__(self, inner: RabbitMQTransport) -> None:
        self.inner = inner

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await self.inner.publish(envelopes)
        os.kill(os.getpid(), signal.SIGKILL)

    def consume(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.consume(*args, **kwargs)


async def main() -> None:
    database = Database(os.environ["RELAY_DATABASE_URL"])
    transport = RabbitMQTransport(os.environ["RELAY_RABBITMQ_URL"], exchange=os.environ["RELAY_EXCHANGE"])
    chosen: Any = DieAfterPublish(transport) if os.environ.get("RELAY_DIE_AFTER_PUBLISH") else transport
    batch_size = int(os.environ.get("RELAY_BATCH_SIZE") or 50)
    relay = OutboxRelay(database, chosen, schema=os.environ["RELAY_SCHEMA"], batch_size=batch_size)
    try:
        await relay.run()
    finally:
        await transport.close()
        await database.dispose()


if __name__ == "__main__":
    asyncio.run(main())
