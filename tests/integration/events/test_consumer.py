"""The consumer on real PostgreSQL and RabbitMQ: inbox dedupe, dead letters, stopping, commands."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import attrs
import pytest
import sqlalchemy as sa

from cqrskit import Command, CommandBus, ConfigurationError, Context, Principal, ValidationFailedError
from cqrskit.events import CommandSender, Consumer, Event, EventBus
from tests.events.support import wrap
from tests.integration.events.conftest import CountingTransport, Stage, eventually

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@attrs.frozen
class Happened(Event):
    n: int
    poison: bool = False


@attrs.frozen
class Recount(Command[None]):
    n: int
    invalid: bool = False


class Effects:
    """A subscriber that writes one effect row per call; optionally slow, optionally failing."""

    def __init__(self, stage: Stage, *, hold: float = 0.0, gate: asyncio.Event | None = None) -> None:
        self.stage = stage
        self.hold = hold
        self.gate = gate
        self.calls = 0
        self.poison_calls = 0

    async def handle(self, event: Happened, context: Context) -> None:
        self.calls += 1
        if event.poison:
            self.poison_calls += 1
            raise RuntimeError("this message can never be handled")
        session = self.stage.database.session
        await session.execute(sa.insert(self.stage.effects).values(event_id=str(event.n)))
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), 30)  # keep the transaction (and inbox row) open
        if self.hold:
            await asyncio.sleep(self.hold)  # keep the transaction open so deliveries overlap


class Audit:
    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    async def handle(self, event: Happened, context: Context) -> None:
        session = self.stage.database.session
        await session.execute(sa.insert(self.stage.effects).values(event_id=f"audit-{event.n}"))


@contextlib.asynccontextmanager
async def consuming(consumer: Consumer) -> AsyncIterator[Consumer]:
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(consumer.started(), 30)
        yield consumer
    finally:
        await consumer.stop(grace=5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def dead_letters(stage: Stage, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(stage.rabbitmq_url)
    try:
        channel = await connection.channel()
        dead = await channel.declare_queue(stage.transport.dead_letter_queue(queue), durable=True)
        found = []
        while (message := await dead.get(no_ack=True, fail=False)) is not None:
            found.append(message)
        return found
    finally:
        await connection.close()


def consumer_for(stage: Stage, bus: Any, queue: str, **options: Any) -> Consumer:
    return Consumer(
        options.pop("transport", stage.transport),
        bus,
        stage.database,
        types={"Happened": Happened},
        queue=queue,
        schema=stage.name,
        **options,
    )


class TestInbox:
    """A message delivered several times has its effects once per subscriber."""

    async def test_five_concurrent_redeliveries_have_one_effect(self, stage: Stage) -> None:
        """One message id five times, all in hand while the first holds its inbox row: one effect."""
        gate = asyncio.Event()
        effects = Effects(stage, gate=gate)
        bus = EventBus({Happened: {"effects": effects, "audit": Audit(stage)}})
        counting = CountingTransport(stage.transport)
        consumer = consumer_for(stage, bus, stage.queue(), concurrency=5, transport=counting)
        envelope = wrap(Happened(1))
        async with consuming(consumer):
            await stage.transport.publish([envelope] * 5)
            await eventually(lambda: _received(counting, 5), what="all five copies in hand at once")
            assert counting.acked == []  # the first is still inside its transaction
            gate.set()
            await eventually(lambda: counting.settled(5), what="all five settled")
        assert counting.acked == [envelope.message_id] * 5
        assert effects.calls == 1  # the four copies waited on the inbox row, then skipped
        assert await stage.effect_counts() == {"1": 1, "audit-1": 1}

    async def test_a_redelivery_reruns_only_the_subscribers_that_failed(self, stage: Stage) -> None:
        """One subscriber committed, the other failed and dead-lettered: a re-drive runs only the second."""

        class FailsOnce:
            def __init__(self) -> None:
                self.failing = True

            async def handle(self, event: Happened, context: Context) -> None:
                if self.failing:
                    raise RuntimeError("down")
                await stage.database.session.execute(sa.insert(stage.effects).values(event_id="second"))

        second = FailsOnce()
        bus = EventBus({Happened: {"first": Audit(stage), "second": second}})
        queue = stage.queue()
        envelope = wrap(Happened(7))
        async with consuming(consumer_for(stage, bus, queue, max_attempts=1)):
            await stage.transport.publish([envelope])
            await eventually(lambda: _dead_letter_count(stage, queue, 1), what="dead-lettered once")
            second.failing = False
            await stage.transport.publish([envelope])  # the same message id, as a re-drive would
            await eventually(lambda: _effect_present(stage, "second"), what="the second subscriber ran")
        assert await stage.effect_counts() == {"audit-7": 1, "second": 1}


class TestRedelivery:
    """A message the broker redelivers re-runs only the subscribers whose transaction had not committed."""

    async def test_a_consumer_cut_off_between_two_subscribers(self, stage: Stage) -> None:
        """The first subscriber committed, the second was cut off: the redelivery runs the second only."""

        class Counted:
            def __init__(self, inner: Any) -> None:
                self.inner, self.calls = inner, 0

            async def handle(self, event: Happened, context: Context) -> None:
                self.calls += 1
                await self.inner.handle(event, context)

        class Stuck:
            def __init__(self) -> None:
                self.started = asyncio.Event()

            async def handle(self, event: Happened, context: Context) -> None:
                await stage.database.session.execute(sa.insert(stage.effects).values(event_id="second"))
                self.started.set()
                await asyncio.Event().wait()  # until the consumer is stopped: rolled back

        class Second:
            async def handle(self, event: Happened, context: Context) -> None:
                await stage.database.session.execute(sa.insert(stage.effects).values(event_id="second"))

        queue = stage.queue()
        first_a, stuck = Counted(Audit(stage)), Stuck()
        consumer_a = consumer_for(stage, EventBus({Happened: {"first": first_a, "second": stuck}}), queue)
        async with consuming(consumer_a):
            await stage.transport.publish([wrap(Happened(3))])
            await asyncio.wait_for(stuck.started.wait(), 30)
            await consumer_a.stop(grace=0)  # the second subscriber's transaction rolls back, no ack
        assert await stage.effect_counts() == {"audit-3": 1}
        first_b = Counted(Audit(stage))
        consumer_b = consumer_for(stage, EventBus({Happened: {"first": first_b, "second": Second()}}), queue)
        async with consuming(consumer_b):
            await eventually(lambda: _effect_present(stage, "second"), what="the redelivered message handled")
        assert (first_a.calls, first_b.calls) == (1, 0)
        assert await stage.effect_counts() == {"audit-3": 1, "second": 1}


class TestDeadLetters:
    """A message that keeps failing goes to the dead-letter queue and the consumer carries on."""

    async def test_poison_goes_to_the_dead_letter_queue_after_n_attempts(self, stage: Stage) -> None:
        """A subscriber that always raises is tried three times; later messages are still handled."""
        effects = Effects(stage)
        queue = stage.queue()
        counting = CountingTransport(stage.transport)
        consumer = consumer_for(
            stage, EventBus({Happened: [effects]}), queue, max_attempts=3, backoff=0.01, transport=counting
        )
        poison = wrap(Happened(0, poison=True))
        async with consuming(consumer):
            await stage.transport.publish([poison] + [wrap(Happened(n)) for n in range(1, 4)])
            await eventually(lambda: _effects_for(stage, 3), what="the good messages handled")
            await eventually(lambda: counting.settled(4), what="all four settled")
        assert effects.poison_calls == 3
        assert counting.dead_lettered == [poison.message_id]
        dead = await dead_letters(stage, queue)  # read back from the dead-letter queue itself
        assert [(m.message_id, m.body) for m in dead] == [(poison.message_id, poison.payload)]
        assert await stage.effect_counts() == {"1": 1, "2": 1, "3": 1}

    async def test_an_unreadable_message_is_dead_lettered_at_once(self, stage: Stage) -> None:
        """A payload that does not structure into its type goes straight to the dead-letter queue."""
        queue = stage.queue()
        async with consuming(consumer_for(stage, EventBus({Happened: [Effects(stage)]}), queue)):
            good = wrap(Happened(1))
            bad = attrs.evolve(good, message_id="bad", payload=b'{"n": "not a number"}')
            await stage.transport.publish([bad, wrap(Happened(2))])
            await eventually(lambda: _dead_letter_count(stage, queue, 1), what="dead-lettered")
            await eventually(lambda: _effects_for(stage, 1), what="the good one handled")

    def test_a_name_without_subscribers_is_refused(self, stage: Stage) -> None:
        """Mapping a name to an event nobody subscribes to is a ConfigurationError at construction."""
        with pytest.raises(ConfigurationError, match="no subscriber"):
            consumer_for(stage, EventBus({}), "unused")


class TestStopping:
    """A consumer stopped mid-batch loses nothing: what it did not acknowledge comes back."""

    async def test_stopped_mid_batch_then_restarted_loses_nothing(self, stage: Stage) -> None:
        """Forty slow messages, stopped midway with handlers cut off; a new consumer finishes, once each."""
        queue = stage.queue()
        first = consumer_for(stage, EventBus({Happened: [Effects(stage, hold=0.1)]}), queue, concurrency=4)
        async with consuming(first):
            await stage.transport.publish([wrap(Happened(n)) for n in range(40)])
            await eventually(lambda: _effects_for(stage, 8), what="a first part handled")
            await first.stop(grace=0)  # cut the handlers in flight: their transactions roll back
        assert len(await stage.effect_counts()) < 40
        second = consumer_for(stage, EventBus({Happened: [Effects(stage)]}), queue, concurrency=4)
        async with consuming(second):
            await eventually(lambda: _effects_for(stage, 40), what="every message handled")
        assert await stage.effect_counts() == {str(n): 1 for n in range(40)}


class RecountHandler:
    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.principals: list[Principal | None] = []

    async def handle(self, command: Recount, context: Context) -> None:
        if command.invalid:
            raise ValidationFailedError({"n": "is invalid"})
        self.principals.append(context.principal)
        await self.stage.database.session.execute(
            sa.insert(self.stage.effects).values(event_id=f"cmd-{command.n}")
        )


class TestCommandsToWorkers:
    """CommandSender posts commands; a worker's Consumer runs them into a CommandBus."""

    async def test_a_sent_command_runs_on_the_worker_once(self, stage: Stage) -> None:
        """The command runs with the sender's principal; an invalid one is dead-lettered without retries."""
        handler = RecountHandler(stage)
        queue = stage.queue()
        worker = Consumer(
            stage.transport_copy(),
            CommandBus({Recount: handler}),
            stage.database,
            types={"Recount": Recount},
            queue=queue,
            schema=stage.name,
        )
        sender = CommandSender(stage.transport)
        async with consuming(worker):
            context = Context(principal=Principal("alice"), correlation_id="corr")
            await sender.send(Recount(5), context)
            await sender.send(Recount(6, invalid=True), context)
            await eventually(lambda: _effect_present(stage, "cmd-5"), what="the command ran")
            await eventually(
                lambda: _dead_letter_count(stage, queue, 1), what="the invalid one dead-lettered"
            )
        assert handler.principals == [Principal("alice")]
        assert await stage.effect_counts() == {"cmd-5": 1}


async def _received(counting: CountingTransport, count: int) -> bool:
    return len(counting.delivered) >= count


async def _effects_for(stage: Stage, count: int) -> bool:
    return len(await stage.effect_counts()) >= count


async def _effect_present(stage: Stage, event_id: str) -> bool:
    return event_id in await stage.effect_counts()


async def _queue_depth(stage: Stage, queue: str) -> tuple[int, int]:
    connection = await aio_pika.connect(stage.rabbitmq_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        dead = await channel.declare_queue(stage.transport.dead_letter_queue(queue), passive=True)
        return declared.declaration_result.message_count or 0, dead.declaration_result.message_count or 0
    finally:
        await connection.close()


async def _dead_letter_count(stage: Stage, queue: str, count: int) -> bool:
    _, dead = await _queue_depth(stage, queue)
    return dead >= count
