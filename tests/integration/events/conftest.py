"""Fixtures and helpers for the events integration tests: a schema, an exchange, queues, removed after."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
import sqlalchemy as sa

from cqrskit.events import RabbitMQTransport, create_event_tables
from cqrskit.sqlalchemy import Database


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0, what: str = "") -> None:
    """Poll `check` until it is true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {within}s: {what}")
        await asyncio.sleep(0.02)


@attrs.define
class Stage:
    """One test's own PostgreSQL schema, RabbitMQ exchange and queues, and an `effects` table."""

    url: str
    rabbitmq_url: str
    name: str
    database: Database
    transport: RabbitMQTransport
    effects: sa.Table
    queues: list[str] = attrs.Factory(list)
    extras: list[Any] = attrs.Factory(list)

    def queue(self, suffix: str = "q") -> str:
        """A queue name of this test's own, deleted (with its dead letters) after it."""
        name = f"{self.name}.{suffix}"
        self.queues.append(name)
        return name

    def transport_copy(self) -> RabbitMQTransport:
        """Another connection to the same exchange, closed after the test (a second 'process')."""
        transport = RabbitMQTransport(self.rabbitmq_url, exchange=self.name)
        self.extras.append(transport)
        return transport

    def database_copy(self) -> Database:
        """Another engine on the same database, disposed after the test (a second 'process')."""
        database = Database(self.url)
        self.extras.append(database)
        return database

    async def effect_counts(self) -> dict[str, int]:
        """How many times each message's effect happened."""
        async with self.database.engine.connect() as connection:
            rows = await connection.execute(
                sa.select(self.effects.c.event_id, sa.func.count()).group_by(self.effects.c.event_id)
            )
            return {row[0]: row[1] for row in rows}


@pytest.fixture
async def stage(postgres_url: str, rabbitmq_url: str, unique_name: str) -> AsyncIterator[Stage]:
    """A schema with the event tables and an effects table, an exchange, and clean-up of all of it."""
    database = Database(postgres_url)
    effects = sa.Table(
        "effects",
        sa.MetaData(schema=unique_name),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String, nullable=False),
        sa.Column("detail", sa.String, nullable=True),
    )
    transport = RabbitMQTransport(rabbitmq_url, exchange=unique_name)
    stage = Stage(postgres_url, rabbitmq_url, unique_name, database, transport, effects)

    async def drop_schema() -> None:
        async with database.engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE'))

    async def close_extras() -> None:
        for extra in stage.extras:
            await (extra.close() if isinstance(extra, RabbitMQTransport) else extra.dispose())

    # Run last to first; each step runs even when a step after it (or the test) failed.
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(database.dispose)
        cleanup.push_async_callback(drop_schema)
        cleanup.push_async_callback(transport.close)
        cleanup.push_async_callback(lambda: transport.delete(*stage.queues, exchanges=True))
        cleanup.push_async_callback(close_extras)
        await create_event_tables(database, unique_name)
        async with database.engine.begin() as connection:
            await connection.run_sync(effects.metadata.create_all)
        yield stage


class _CountedDelivery:
    def __init__(self, inner: Any, counter: CountingTransport) -> None:
        self.inner, self.counter = inner, counter

    @property
    def envelope(self) -> Any:
        return self.inner.envelope

    async def ack(self) -> None:
        await self.inner.ack()
        self.counter.acked.append(self.envelope.message_id)

    async def dead_letter(self) -> None:
        await self.inner.dead_letter()
        self.counter.dead_lettered.append(self.envelope.message_id)

    async def release(self) -> None:
        await self.inner.release()


class CountingTransport:
    """Wraps a transport and records every delivery and how it was settled, duplicates included."""

    def __init__(self, inner: RabbitMQTransport) -> None:
        self.inner = inner
        self.delivered: list[str] = []
        self.acked: list[str] = []
        self.dead_lettered: list[str] = []

    async def publish(self, envelopes: Any) -> None:
        await self.inner.publish(envelopes)

    @contextlib.asynccontextmanager
    async def consume(self, queue: str, names: Any, *, prefetch: int) -> AsyncIterator[Any]:
        async with self.inner.consume(queue, names, prefetch=prefetch) as deliveries:

            async def counted() -> AsyncIterator[Any]:
                async for delivery in deliveries:
                    self.delivered.append(delivery.envelope.message_id)
                    yield _CountedDelivery(delivery, self)

            yield counted()

    async def settled(self, count: int) -> bool:
        """True once `count` deliveries were acknowledged or dead-lettered."""
        return len(self.acked) + len(self.dead_lettered) >= count
