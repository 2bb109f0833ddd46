"""`NatsTransport`: the `Transport` for NATS JetStream, through nats-py (extra ``nats``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import zlib
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from cqrskit._errors import ConfigurationError
from cqrskit.events._dead_letters import DeadLetter, Selector, chosen
from cqrskit.events._envelope import Envelope

__all__ = ["NatsTransport"]

_ID = "Cqrskit-Message-Id"
_NAME = "Cqrskit-Name"
_ENVELOPE = "Cqrskit-Envelope"  # the envelope's headers(), as JSON
_DEAD_FROM = "Cqrskit-Dead-Letter-Queue"
_DEAD_REASON = "Cqrskit-Dead-Letter-Reason"
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_-]")
_FETCH_WAIT = 1.0  # seconds a pull waits for messages before it asks again


class _NatsDelivery:
    __slots__ = ("_envelope", "_message", "_queue", "_settled", "_transport")

    def __init__(
        self, message: Msg, envelope: Envelope, queue: str, transport: NatsTransport, settled: Any
    ) -> None:
        self._message = message
        self._envelope = envelope
        self._queue = queue
        self._transport = transport
        self._settled = settled  # called once this delivery is settled, whichever way

    @property
    def envelope(self) -> Envelope:
        return self._envelope

    async def ack(self) -> None:
        await self._message.ack()
        self._settled(self)

    async def dead_letter(self) -> None:
        await self._transport._bury(self._message, self._queue, "rejected")
        self._settled(self)

    async def release(self) -> None:
        await self._message.nak()
        self._settled(self)


class NatsTransport:
    """Publishes to and consumes from NATS JetStream: a durable stream, durable consumers, dead letters.

    Messages are published to the subject ``<subjects>.<name>`` of one stream (``stream``, file
    storage, interest retention: a message is kept until every queue it was routed to has
    acknowledged it), and ``publish`` returns once JetStream has acknowledged every one (it raises
    `TimeoutError` when that takes more than `publish_timeout` seconds). Each queue
    ``q`` a `Consumer` reads is a durable pull consumer of that stream, filtered on the names it
    handles; like a RabbitMQ queue, it receives what is published after it was created.

    A delivery not settled within `ack_wait` seconds is delivered again (while the consuming process
    lives, its unsettled deliveries are kept alive, so only a dead process's wait that long). A message
    delivered `max_deliveries` times without being settled (a message that kills its consumer every
    time), and every message a `Consumer` dead-letters, is republished with all its headers to the
    dead-letter stream ``<stream>_dead_letter`` under ``<subjects>_dead_letter.<queue>``, then
    removed from the queue. Open it with ``async with`` or `connect`, and `close` it when done::

        transport = NatsTransport("nats://localhost:4222", stream="shop")
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str = "cqrskit",
        subjects: str | None = None,
        ack_wait: float = 30.0,
        max_deliveries: int = 20,
        publish_timeout: float = 10.0,
    ) -> None:
        if _NOT_A_NAME.search(stream):
            raise ConfigurationError(f"a JetStream stream name has letters, digits, _ and - only: {stream!r}")
        if max_deliveries < 1:
            raise ConfigurationError(
                f"max_deliveries counts the first delivery: at least 1, got {max_deliveries}"
            )
        self._url = url
        self._stream = stream
        self._subjects = subjects or stream
        self._ack_wait = ack_wait
        self._max_deliveries = max_deliveries
        self._publish_timeout = publish_timeout
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        """The server URL this transport connects to."""
        return self._url

    @property
    def stream(self) -> str:
        """The name of the JetStream stream messages are published to."""
        return self._stream

    @property
    def dead_letter_stream(self) -> str:
        """The name of the stream that keeps every queue's dead letters."""
        return f"{self._stream}_dead_letter"

    def subject(self, name: str) -> str:
        """Return the subject a message routed by `name` is published to."""
        return f"{self._subjects}.{name}"

    def dead_letter_subject(self, queue: str) -> str:
        """Return the subject, in `dead_letter_stream`, where `queue`'s dead letters land."""
        return f"{self._subjects}_dead_letter.{queue}"

    def consumer_name(self, queue: str) -> str:
        """Return the durable JetStream consumer that stands for `queue` (made a valid name)."""
        cleaned = _NOT_A_NAME.sub("_", queue)
        if cleaned == queue:
            return queue
        return f"{cleaned}-{zlib.crc32(queue.encode()):08x}"  # two queues never share one after cleaning

    async def connect(self) -> None:
        """Connect and create both streams unless they exist (done on first use when you do not call it)."""
        async with self._lock:
            if self._js is not None:
                return
            client = await nats.connect(self._url)
            js = client.jetstream()
            try:
                await _ensure_stream(
                    js,
                    StreamConfig(
                        name=self._stream,
                        subjects=[f"{self._subjects}.>"],
                        retention=RetentionPolicy.INTEREST,
                        storage=StorageType.FILE,
                    ),
                )
                await _ensure_stream(
                    js,
                    StreamConfig(
                        name=self.dead_letter_stream,
                        subjects=[f"{self._subjects}_dead_letter.>"],
                        retention=RetentionPolicy.LIMITS,
                        storage=StorageType.FILE,
                    ),
                )
            except BaseException:
                await client.close()
                raise
            self._client, self._js = client, js

    async def close(self) -> None:
        """Close the connection; unsettled deliveries are delivered again after `ack_wait`."""
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            await client.close()

    async def __aenter__(self) -> NatsTransport:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            await self.connect()
        assert self._js is not None  # noqa: S101 - set by connect()
        return self._js

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Publish `envelopes` in the order given and wait for JetStream's acknowledgements, pipelined.

        Every message is sent on the one connection, in order, before any acknowledgement is
        awaited: JetStream stores a connection's messages in the order they arrive, so one key's
        messages keep their order while the acknowledgements of the whole batch come back together.
        """
        if not envelopes:
            return
        js = await self._jetstream()
        pending: list[asyncio.Future[Any]] = []
        try:
            for envelope in envelopes:
                pending.append(  # noqa: PERF401 - each awaited in turn, to keep the order
                    await js.publish_async(
                        self.subject(envelope.name),
                        envelope.payload,
                        stream=self._stream,
                        headers=_headers(envelope),
                    )
                )
            async with asyncio.timeout(self._publish_timeout):
                await asyncio.gather(*pending)
        finally:
            for future in pending:
                future.cancel()  # those not answered in time: forgotten, and their slots freed

    @asynccontextmanager
    async def consume(
        self, queue: str, names: Collection[str], *, prefetch: int = 10
    ) -> AsyncIterator[AsyncIterator[_NatsDelivery]]:
        """Create `queue`'s durable consumer (filtered on `names`) unless it exists, and yield deliveries.

        Leaving the block gives every unsettled delivery back (a negative acknowledgement) at once.
        """
        js = await self._jetstream()
        durable = self.consumer_name(queue)
        subjects = sorted(self.subject(name) for name in names)
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._ack_wait,
            # No server-side limit: a delivery can go to a pull request whose process just died, and a
            # message whose last allowed delivery went there would stay stuck. The transport counts
            # instead: the delivery after max_deliveries is moved to the dead letters, whoever gets it.
            max_deliver=-1,
            max_ack_pending=-1,
        )
        wanted: frozenset[str] | None = None
        if len(subjects) == 1:
            config.filter_subject = subjects[0]
        elif self._filters_several():
            config.filter_subjects = subjects
        else:  # NATS before 2.10 filters on one subject only: take them all, skip the others here
            config.filter_subject = f"{self._subjects}.>"
            wanted = frozenset(subjects)
        await js.add_consumer(self._stream, config)
        subscription = await js.pull_subscribe_bind(durable, self._stream)
        unsettled: dict[int, _NatsDelivery] = {}
        room = asyncio.Event()
        room.set()

        def settled(delivery: _NatsDelivery) -> None:
            unsettled.pop(id(delivery), None)
            room.set()

        async def deliveries() -> AsyncIterator[_NatsDelivery]:
            while True:
                free = prefetch - len(unsettled)
                if free <= 0:
                    room.clear()
                    await room.wait()
                    continue
                try:
                    messages = await subscription.fetch(free, timeout=_FETCH_WAIT)
                except TimeoutError:
                    # No message within the wait. nats-py raises its own TimeoutError for that, and a
                    # plain one when the server's answer comes just before the deadline: catching
                    # only the first let the second end the consumer's loop (a silent stall).
                    continue
                except nats.errors.ConnectionClosedError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        # nats-py turns a cancelled fetch on a closed connection into this error:
                        # give the cancellation back to whoever asked for it.
                        raise asyncio.CancelledError from None
                    raise
                for message in messages:
                    delivery = await self._receive(message, queue, wanted, settled)
                    if delivery is not None:
                        unsettled[id(delivery)] = delivery
                        yield delivery

        keeping_alive = asyncio.create_task(self._keep_alive(unsettled))
        try:
            yield deliveries()
        finally:
            keeping_alive.cancel()
            # Shielded: a consumer cancelled while it stops still hands its deliveries back.
            await asyncio.shield(_give_back(list(unsettled.values()), subscription))

    def _filters_several(self) -> bool:
        client = self._client
        if client is None:
            return False
        version = client.connected_server_version
        return (version.major, version.minor) >= (2, 10)

    async def _receive(
        self, message: Msg, queue: str, wanted: frozenset[str] | None, settled: Any
    ) -> _NatsDelivery | None:
        """Turn a message into a delivery, or settle it here: not this queue's, or delivered too often."""
        if wanted is not None and message.subject not in wanted:
            await message.ack()
            return None
        if message.metadata.num_delivered > self._max_deliveries:
            await self._bury(message, queue, f"delivered {self._max_deliveries} times")
            return None
        return _NatsDelivery(message, _envelope_of(message, self._subjects), queue, self, settled)

    async def _bury(self, message: Msg, queue: str, reason: str) -> None:
        """Republish `message`, every header kept, to `queue`'s dead letters; then remove it from `queue`."""
        js = await self._jetstream()
        # Every header of ours travels on; JetStream's own (Nats-Expected-Stream...) would misdirect it.
        headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("Nats-")}
        headers[_DEAD_FROM] = queue
        headers[_DEAD_REASON] = reason
        await js.publish(self.dead_letter_subject(queue), message.data, headers=headers)
        await message.term()

    async def _keep_alive(self, unsettled: dict[int, _NatsDelivery]) -> None:
        """Tell JetStream the deliveries in hand are still being worked on, so it does not resend them."""
        while True:
            await asyncio.sleep(self._ack_wait / 3)
            for delivery in list(unsettled.values()):
                with contextlib.suppress(Exception):  # settled meanwhile, or the connection is gone
                    await delivery._message.in_progress()

    async def ping(self) -> None:
        """Raise unless the client is connected to NATS (connecting first if it never was)."""
        await self._jetstream()
        client = self._client
        if client is None or not client.is_connected:
            raise ConnectionError("NATS is not connected")

    async def dead_letters(self, queue: str, *, limit: int | None = None) -> list[DeadLetter]:
        """Return the messages dead-lettered from `queue`, oldest first (read, not removed)."""
        return [dead for dead, _ in await self._read_dead_letters(queue, limit)]

    async def replay(
        self, queue: str, *, message_ids: Collection[str] | None = None, where: Selector | None = None
    ) -> int:
        """Publish the chosen dead letters again, with their ids and every header; remove them after.

        A replayed message goes to the stream under its name's subject, so every queue that takes
        that name receives it again: the inbox (keyed by message id and subscriber) skips the
        subscribers that handled it before where the queues share it. Return how many were replayed.
        """
        js = await self._jetstream()
        replayed = 0
        for dead, sequence in await self._read_dead_letters(queue, None):
            if chosen(dead, message_ids, where):
                await self.publish([dead.envelope])
                await js.delete_msg(self.dead_letter_stream, sequence)
                replayed += 1
        return replayed

    async def purge(
        self, queue: str, *, message_ids: Collection[str] | None = None, where: Selector | None = None
    ) -> int:
        """Remove the chosen dead letters of `queue` for good; return how many."""
        js = await self._jetstream()
        purged = 0
        for dead, sequence in await self._read_dead_letters(queue, None):
            if chosen(dead, message_ids, where):
                await js.delete_msg(self.dead_letter_stream, sequence)
                purged += 1
        return purged

    async def _read_dead_letters(self, queue: str, limit: int | None) -> list[tuple[DeadLetter, int]]:
        js = await self._jetstream()
        subject = self.dead_letter_subject(queue)
        info = await js.stream_info(self.dead_letter_stream, subjects_filter=subject)
        total = (info.state.subjects or {}).get(subject, 0)
        if limit is not None:
            total = min(total, limit)
        found: list[tuple[DeadLetter, int]] = []
        if total == 0:
            return found
        subscription = await js.subscribe(subject, stream=self.dead_letter_stream, ordered_consumer=True)
        try:
            while len(found) < total:
                message = await subscription.next_msg(timeout=5)
                headers = message.headers or {}
                metadata = message.metadata
                dead = DeadLetter(
                    _envelope_of(message, self._subjects),
                    queue,
                    headers.get(_DEAD_REASON),
                    metadata.timestamp.timestamp(),
                )
                found.append((dead, metadata.sequence.stream))
        finally:
            await subscription.unsubscribe()
        return found

    async def delete(self, *queues: str, streams: bool = False) -> None:
        """Delete `queues` and their dead letters, and both streams too when `streams` is True.

        Meant for tests and tear-down scripts that made names of their own.
        """
        js = await self._jetstream()
        for queue in queues:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_consumer(self._stream, self.consumer_name(queue))
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.purge_stream(self.dead_letter_stream, subject=self.dead_letter_subject(queue))
        if streams:
            for name in (self._stream, self.dead_letter_stream):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(name)

    def __repr__(self) -> str:
        return f"NatsTransport(stream={self._stream!r})"


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None  # noqa: S101 - always given above
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)


async def _give_back(deliveries: list[_NatsDelivery], subscription: Any) -> None:
    for delivery in deliveries:
        with contextlib.suppress(Exception):  # the connection may be gone: then ack_wait does it
            await delivery.release()
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()


def _headers(envelope: Envelope) -> dict[str, str]:
    return {
        _ID: envelope.message_id,
        _NAME: envelope.name,
        _ENVELOPE: json.dumps(envelope.headers(), separators=(",", ":")),
    }


def _envelope_of(message: Msg, subjects: str) -> Envelope:
    headers = message.headers or {}
    try:
        extra = json.loads(headers.get(_ENVELOPE) or "{}")
    except ValueError:
        extra = {}
    return Envelope.from_parts(
        headers.get(_ID, ""),
        headers.get(_NAME) or message.subject.removeprefix(f"{subjects}."),
        message.data,
        extra if isinstance(extra, dict) else {},
    )
