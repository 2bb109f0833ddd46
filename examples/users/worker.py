"""The events worker: ``python -m examples.users.worker`` (only with ``USERS_BROKER_URL`` set).

It runs, until SIGINT or SIGTERM, the two halves of the scaled-out event flow, both built by the
service's container from the same ``USERS_*`` settings as the API processes:

- an `OutboxRelay`, moving the events the API's commands wrote to the outbox on to the
  broker (RabbitMQ or NATS JetStream, as ``USERS_BROKER_URL`` says);
- a `Consumer` of the ``<USERS_BROKER_NAME>.user-stats`` queue, feeding the event bus, whose
  `UserStatsProjection` updates the ``user_stats`` read model in the consumer's transaction and
  invalidates `GetUserStats`'s cached results once that transaction has committed.

Run as many as you like: relays share the outbox without publishing a row twice while healthy, and
consumers share the queue (the counters' deltas commute, so their order does not matter here).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from examples.users.app import prepare_database
from examples.users.container import Container
from examples.users.logs import configure_logging
from examples.users.settings import Settings


async def run_worker(container: Container, stop: asyncio.Event) -> None:
    """Relay and consume until `stop` is set (or one of them fails), then shut down cleanly."""
    settings: Settings = container.settings()
    log = structlog.get_logger("examples.users.worker")
    database = container.database()
    await prepare_database(container)
    consumer, relay = container.consumer(), container.relay()
    invalidation = container.invalidation()
    consuming = asyncio.create_task(consumer.run(), name="consumer")
    tasks = [consuming, asyncio.create_task(invalidation.run(), name="invalidations")]
    try:
        # The queue must exist before the relay publishes, or the broker drops what it is sent.
        started = asyncio.create_task(consumer.started())
        await asyncio.wait({started, consuming}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            await consuming  # it ended before it started: raise its error
        tasks.append(asyncio.create_task(relay.run(), name="relay"))
        log.info(
            "worker_started", queue=settings.stats_queue, broker=settings.broker, name=settings.broker_name
        )
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopping, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        for task in done - {stopping}:
            task.result()  # a relay or consumer that ended on its own: raise its error
    finally:
        relay.stop()
        invalidation.stop()
        await consumer.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await container.transport().close()
        await container.cache().close()
        await database.dispose()
        log.info("worker_stopped")


async def main_async() -> None:
    """Build the container from the environment, run the worker until a signal asks it to stop."""
    container = Container()
    settings: Settings = container.settings()
    if settings.configure_logging:
        configure_logging(settings)
    if settings.event_delivery != "outbox":
        sys.exit(
            "the worker needs USERS_BROKER_URL (with PostgreSQL and Redis); "
            "without a broker, events are delivered in-process and no worker is needed"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run_worker(container, stop)


def main() -> None:
    """Run the worker until interrupted."""
    asyncio.run(main_async())


if __name__ == "__main__":
    main()
