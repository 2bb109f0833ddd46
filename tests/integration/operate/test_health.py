"""cqrskit.health's checks against real PostgreSQL and RabbitMQ, and what a report says."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from cqrskit.events import OutboxRelay, RabbitMQTransport
from cqrskit.events._tables import event_tables
from cqrskit.health import (
    HealthReport,
    Readiness,
    database_check,
    relay_lag_check,
    transport_check,
)
from cqrskit.sqlalchemy import Database
from tests.integration.operate.conftest import Stage

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


async def test_what_is_down_is_named_and_nothing_else(stage: Stage) -> None:
    unreachable = RabbitMQTransport("amqp://guest:guest@127.0.0.1:1/", exchange=stage.name)
    nowhere = Database("postgresql+asyncpg://postgres@127.0.0.1:1/test")
    try:
        readiness = Readiness(
            {
                "database": database_check(stage.database),
                "broker": transport_check(stage.transport),
                "other_database": database_check(nowhere),
                "other_broker": transport_check(unreachable),
            },
            timeout=5.0,
        )
        report = await readiness.check()
    finally:
        await nowhere.dispose()
    assert report == HealthReport(ok=False, down=("other_database", "other_broker"))
    assert report.as_json() == {"status": "unavailable", "down": ["other_database", "other_broker"]}


async def test_relay_lag_is_the_age_of_the_oldest_unsent_row(stage: Stage) -> None:
    relay = OutboxRelay(stage.database, stage.transport, schema=stage.name)
    lag = Readiness({"outbox": relay_lag_check(relay, max_age=60.0)})
    assert (await relay.backlog()).pending == 0
    assert (await lag.check()).ok
    outbox = event_tables(stage.name).outbox
    async with stage.database.transaction() as session:
        await session.execute(
            sa.insert(outbox).values(
                message_id="late",
                name="Late",
                partition=-1,
                payload=b"{}",
                headers="{}",
                created_at=time.time() - 600,
            )
        )
    backlog = await relay.backlog()
    assert backlog.pending == 1
    assert backlog.oldest_age is not None
    assert backlog.oldest_age >= 600
    assert (await lag.check()).down == ("outbox",)
