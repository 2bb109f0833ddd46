"""The events worker: ``python -m examples.users.worker`` (only with ``USERS_BROKER_URL`` set).

It is cqrskit's own process, ``python -m cqrskit worker examples.users.container:Container``, started
after the service's tables exist: the container's `Consumer` (provider ``consumer``) of the
``<USERS_BROKER_NAME>.user-stats`` queue feeds the event bus, whose `UserStatsProjection` updates the
``user_stats`` read model in the consumer's transaction; its `OutboxRelay` (provider ``relay``) moves
the events the API's commands wrote to the outbox on to the broker (RabbitMQ or NATS JetStream, as
``USERS_BROKER_URL`` says). It stops gracefully on SIGTERM or SIGINT; extra arguments go to the
command (``--health-port 8081``, ``--metrics``, ``--concurrency 4``: see docs/operations.md).

Run as many as you like: relays share the outbox without publishing a row twice while healthy, and
consumers share the queue (the counters' deltas commute, so their order does not matter here). To
run the relay and the consumer apart, use ``python -m cqrskit relay ...`` and ``... consume ...``.
"""

from __future__ import annotations

import asyncio
import os
import sys

from examples.users.app import prepare_database
from examples.users.container import Container
from examples.users.settings import Settings

CONTAINER = "examples.users.container:Container"


def command(settings: Settings, *extra: str) -> list[str]:
    """Return the ``python -m cqrskit worker`` command line for these settings."""
    return [
        sys.executable,
        "-m",
        "cqrskit",
        "worker",
        CONTAINER,
        "--create-tables",
        "--log-format",
        "json" if settings.log_json else "console",
        "--log-level",
        settings.log_level,
        *extra,
    ]


def main() -> None:
    """Create the service's tables, then become ``python -m cqrskit worker`` (same process id)."""
    settings = Settings.from_environment()
    if settings.event_delivery != "outbox":
        sys.exit(
            "the worker needs USERS_BROKER_URL (with PostgreSQL and Redis); "
            "without a broker, events are delivered in-process and no worker is needed"
        )

    async def prepare() -> None:
        container = Container()
        try:
            await prepare_database(container)
        finally:
            await container.database().dispose()

    asyncio.run(prepare())
    arguments = command(settings, *sys.argv[1:])
    os.execv(arguments[0], arguments)  # noqa: S606 - our own interpreter: signals reach the command


if __name__ == "__main__":
    main()
