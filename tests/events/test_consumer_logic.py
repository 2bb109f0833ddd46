"""Consumer logic on SQLite with an in-memory transport: inbox, retries, dead letters, commands."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from cqrskit import Command, CommandBus, ConfigurationError, Context, NotFoundError
from cqrskit.events import CommandSender, Consumer, Envelope, Event, EventBus, create_event_tables
from cqrskit.sqlalchemy import Database
from tests.events.support import wrap


@attrs.frozen
class Pinged(Event):
    n: int


@attrs.frozen
class Ponged(Event):
    n: int


@attrs.frozen
class Ping(Command[None]):
    n: int


class FakeDelivery:
    def __init__(self, envelope: Envelope, settled: list[tuple[str, str]]) -> None:
        self._envelope = envelope
        self._settled = settled

    @property
    def envelope(self) -> Envelope:
        return self._envelope

    async def ack(self) -> None:
        self._settled.append(("ack", self._envelope.message_id))

    async def dead_letter(self) -> None:
        self._settled.append(("dead", self._envelope.message_id))

    async def release(self) -> None:
        self._settled.append(("release", self._envelope.message_id))


class InMemoryTransport:
    """A `Transport` that keeps one queue in memory: enough to drive a Consumer in a unit test."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Envelope] = asyncio.Queue()
        self.settled: list[tuple[str, str]] = []

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            self.queue.put_nowait(envelope)

    @contextlib.asynccontextmanager
    async def consume(self, queue: str, names: Collection[str], *, prefetch: int) -> AsyncIterator[Any]:
        async def deliveries() -> AsyncIterator[FakeDelivery]:
            while True:
                yield FakeDelivery(await self.queue.get(), self.settled)

        yield deliveries()


class Counter:
    def __init__(self, fail_times: int = 0, error: Exception | None = None) -> None:
        self.calls = 0
        self.fail_times = fail_times
        self.error = error or RuntimeError("transient")

    async def handle(self, message: Any, context: Context) -> None:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise self.error


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    database = Database()
    await create_event_tables(database)
    yield database
    await database.dispose()


def pinged_consumer(
    transport: InMemoryTransport, database: Database, subscribers: Any, **options: Any
) -> Consumer:
    """A Consumer of `Pinged` on queue "q", into an EventBus with `subscribers`."""
    return Consumer(
        transport, EventBus({Pinged: subscribers}), database, types={"Pinged": Pinged}, queue="q", **options
    )


@contextlib.asynccontextmanager
async def consuming(consumer: Consumer) -> AsyncIterator[None]:
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(consumer.started(), 10)
    try:
        yield
    finally:
        await consumer.stop(grace=1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Any, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - polls what a background task appends to a list
            await asyncio.sleep(0.005)


class TestConsumerLogic:
    """The consumer's retry, dedupe and dead-letter rules, without a broker."""

    async def test_a_transient_failure_is_retried_then_acknowledged(self, database: Database) -> None:
        """Two failures then success with max_attempts=3: one ack, three calls."""
        transport, counter = InMemoryTransport(), Counter(fail_times=2)
        consumer = pinged_consumer(transport, database, [counter], max_attempts=3, backoff=0.001)
        async with consuming(consumer):
            envelope = wrap(Pinged(1))
            await transport.publish([envelope])
            await until(lambda: transport.settled)
        assert transport.settled == [("ack", envelope.message_id)]
        assert counter.calls == 3

    async def test_retries_back_off_exponentially_then_dead_letter(
        self, database: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Retry n waits a random time up to backoff * 2**(n-1), capped; after N attempts, a dead letter."""
        bounds: list[tuple[float, float]] = []

        class NoJitter:
            @staticmethod
            def uniform(low: float, high: float) -> float:
                bounds.append((low, high))
                return 0.0

        monkeypatch.setattr(random, "uniform", NoJitter.uniform)
        transport, counter = InMemoryTransport(), Counter(fail_times=99)
        consumer = pinged_consumer(
            transport, database, [counter], max_attempts=5, backoff=0.01, max_backoff=0.03
        )
        async with consuming(consumer):
            envelope = wrap(Pinged(1))
            await transport.publish([envelope])
            await until(lambda: transport.settled)
        assert counter.calls == 5
        assert bounds == [(0, 0.01), (0, 0.02), (0, 0.03), (0, 0.03)]
        assert transport.settled == [("dead", envelope.message_id)]

    async def test_a_domain_failure_is_dead_lettered_without_retries(self, database: Database) -> None:
        """NOT_FOUND will not heal: dead-lettered after one attempt."""
        transport, counter = InMemoryTransport(), Counter(fail_times=9, error=NotFoundError("gone"))
        consumer = pinged_consumer(transport, database, [counter])
        async with consuming(consumer):
            envelope = wrap(Pinged(1))
            await transport.publish([envelope])
            await until(lambda: transport.settled)
        assert transport.settled == [("dead", envelope.message_id)]
        assert counter.calls == 1

    async def test_a_duplicate_is_acknowledged_without_running(self, database: Database) -> None:
        """The same message id twice: the subscriber runs once, both are acknowledged."""
        transport, counter = InMemoryTransport(), Counter()
        consumer = pinged_consumer(transport, database, [counter])
        async with consuming(consumer):
            envelope = wrap(Pinged(1))
            await transport.publish([envelope, envelope])
            await until(lambda: len(transport.settled) == 2)
        assert counter.calls == 1
        assert [kind for kind, _ in transport.settled] == ["ack", "ack"]

    async def test_commands_run_into_a_command_bus(self, database: Database) -> None:
        """CommandSender to Consumer to CommandBus: the handler runs with the sender's correlation id."""
        transport = InMemoryTransport()
        seen: list[Context] = []

        class PingHandler:
            async def handle(self, command: Ping, context: Context) -> None:
                seen.append(context)

        consumer = Consumer(
            transport, CommandBus({Ping: PingHandler()}), database, types={"Ping": Ping}, queue="q"
        )
        async with consuming(consumer):
            await CommandSender(transport).send(Ping(1), Context(correlation_id="c"))
            await until(lambda: transport.settled)
        assert [c.correlation_id for c in seen] == ["c"]

    async def test_the_inbox_row_rolls_back_with_a_failed_subscriber(self, database: Database) -> None:
        """After a dead letter, the failing subscriber left no inbox row behind."""
        transport, counter = InMemoryTransport(), Counter(fail_times=9)
        consumer = pinged_consumer(transport, database, {"flaky": counter}, max_attempts=2, backoff=0.001)
        async with consuming(consumer):
            await transport.publish([wrap(Pinged(1))])
            await until(lambda: transport.settled)
        async with database.engine.connect() as connection:
            count = await connection.scalar(sa.text("SELECT count(*) FROM cqrskit_inbox"))
        assert count == 0


class TestTenants:
    """A message's tenant reaches its subscribers, its inbox rows and the consumer's log lines."""

    async def test_the_subscriber_the_inbox_and_the_log_see_the_tenant(self, database: Database) -> None:
        """A Pinged of tenant acme runs with acme's context; its inbox row and failure warning name acme."""
        tenants: list[str | None] = []

        class Failing:
            async def handle(self, event: Pinged, context: Context) -> None:
                tenants.append(context.tenant)
                raise NotFoundError("gone")

        transport = InMemoryTransport()
        consumer = pinged_consumer(transport, database, {"ok": Counter(), "failing": Failing()})
        envelope = attrs.evolve(wrap(Pinged(1)), tenant="acme")
        with capture_logs() as logs:
            async with consuming(consumer):
                await transport.publish([envelope])
                await until(lambda: transport.settled)
        assert tenants == ["acme"]
        warnings = [log for log in logs if log["event"] == "subscriber_failed"]
        assert [w["tenant"] for w in warnings] == ["acme", "acme"]  # the event bus's line and the consumer's
        assert envelope.message_id in [w.get("message_id") for w in warnings]
        async with database.engine.connect() as connection:
            rows = (await connection.execute(sa.text("SELECT subscriber, tenant FROM cqrskit_inbox"))).all()
        assert [tuple(row) for row in rows] == [("ok", "acme")]  # the failed subscriber's row rolled back


class TestConsumerConfiguration:
    """Wiring mistakes in a Consumer raise when it is built."""

    def test_refuses_bad_mappings(self, database: Database) -> None:
        """A command on an event bus, an unrouted command and zero attempts are all refused."""
        transport = InMemoryTransport()
        with pytest.raises(ConfigurationError, match="not an Event"):
            Consumer(transport, EventBus({Pinged: [Counter()]}), database, types={"Ping": Ping}, queue="q")
        with pytest.raises(ConfigurationError, match="no route"):
            Consumer(transport, CommandBus({}), database, types={"Ping": Ping}, queue="q")
        with pytest.raises(ConfigurationError, match="not a Command"):
            Consumer(transport, CommandBus({}), database, types={"Pinged": Pinged}, queue="q")
        with pytest.raises(ConfigurationError, match="at least 1"):
            pinged_consumer(transport, database, [Counter()], max_attempts=0)


class TestHousekeeping:
    """Old inbox and outbox rows can be purged."""

    async def test_purge_inbox_and_outbox(self, database: Database) -> None:
        """Rows older than the cutoff go; with a cutoff in the future, none do."""
        from cqrskit.events import OutboxPublisher, OutboxRelay

        transport = InMemoryTransport()
        consumer = pinged_consumer(transport, database, [Counter()])
        async with consuming(consumer):
            await transport.publish([wrap(Pinged(1))])
            await until(lambda: transport.settled)
        publisher = OutboxPublisher(database)
        async with database.transaction():
            await publisher.publish(Pinged(2))
        relay = OutboxRelay(database, transport)
        assert await relay.relay_once() == 1
        assert await consumer.purge_inbox(older_than=3600) == 0
        assert await relay.purge(older_than=3600) == 0
        assert await consumer.purge_inbox(older_than=-1) == 1
        assert await relay.purge(older_than=-1) == 1


class TestUnreadableMessages:
    """Messages the consumer cannot trust are dead-lettered at once."""

    async def test_unknown_name_or_missing_id(self, database: Database) -> None:
        """A name outside `types` and a message without an id both go to the dead letters."""
        transport, counter = InMemoryTransport(), Counter()
        consumer = pinged_consumer(transport, database, [counter])
        good = wrap(Pinged(1))
        async with consuming(consumer):
            await transport.publish([attrs.evolve(good, name="Other"), attrs.evolve(good, message_id="")])
            await until(lambda: len(transport.settled) == 2)
        assert [kind for kind, _ in transport.settled] == ["dead", "dead"]
        assert counter.calls == 0


HOOKED = sa.Table("hooked", sa.MetaData(), sa.Column("message_id", sa.String, primary_key=True))


class RecordingHook:
    """Writes a row through the hook's transaction, and remembers what it was told."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.told: list[tuple[str, str, bool]] = []

    async def dead_lettered(self, envelope: Envelope, reason: str) -> None:
        self.told.append((envelope.message_id, reason, self.database.in_transaction()))
        await self.database.session.execute(sa.insert(HOOKED).values(message_id=envelope.message_id))


class RaisingHook:
    async def dead_lettered(self, envelope: Envelope, reason: str) -> None:
        raise RuntimeError("the hook is broken")


class TestDeadLetterHooks:
    """Hooks learn of each message given up on, in a transaction; a broken one stops nothing."""

    async def hooked(self, database: Database) -> list[str]:
        async with database.read_session() as session:
            return list((await session.execute(sa.select(HOOKED.c.message_id))).scalars())

    async def test_each_failure_kind_reaches_the_hooks(self, database: Database) -> None:
        """Refused at once, failed past its retries, unreadable: each told once, its row committed."""
        async with database.engine.begin() as connection:
            await connection.run_sync(HOOKED.metadata.create_all)
        recording = RecordingHook(database)
        transport = InMemoryTransport()
        refusing, failing = Counter(fail_times=9, error=NotFoundError("gone")), Counter(fail_times=9)
        consumer = Consumer(
            transport,
            EventBus({Pinged: [refusing], Ponged: [failing]}),
            database,
            types={"Pinged": Pinged, "Ponged": Ponged},
            queue="q",
            max_attempts=2,
            backoff=0.001,
            dead_letter_hooks=[RaisingHook(), recording],
        )
        refused, failed = wrap(Pinged(1)), wrap(Ponged(2))
        unreadable = attrs.evolve(wrap(Pinged(3)), payload=b"not json")
        async with consuming(consumer):
            await transport.publish([refused, failed, unreadable])
            await until(lambda: len(transport.settled) == 3)
        assert sorted(transport.settled) == sorted(
            ("dead", e.message_id) for e in (refused, failed, unreadable)
        )
        assert sorted(recording.told) == sorted(
            [
                (refused.message_id, "not retryable", True),
                (failed.message_id, "failed 2 time(s)", True),
                (unreadable.message_id, "unreadable", True),
            ]
        )
        assert sorted(await self.hooked(database)) == sorted(
            e.message_id for e in (refused, failed, unreadable)
        )
