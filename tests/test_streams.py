"""Streaming queries: `QueryBus.stream`, the behaviours around a stream, backpressure and closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import attrs
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from cqrskit import (
    ConfigurationError,
    Context,
    NotFoundError,
    OperationStatus,
    Principal,
    Query,
    QueryBus,
    ResultError,
    Stream,
    StreamHandler,
    StreamQuery,
)
from cqrskit.behaviours import (
    Authenticated,
    Authorization,
    Logging,
    Metrics,
    Retry,
    Timeout,
    Tracing,
    Validation,
)
from cqrskit.caching import CachePolicy, QueryCache
from cqrskit.testing import InMemoryCache
from tests.behaviours.observed_app import tracer_provider

ALICE = Context(principal=Principal("alice"))


@attrs.frozen
class Numbers(StreamQuery[int]):
    """Yields 0 .. count-1; fails at `fail_at` when set."""

    count: int
    fail_at: int | None = None
    delay: float = 0.0

    def validate(self) -> Mapping[str, str]:
        return {"count": "must not be negative"} if self.count < 0 else {}


@attrs.frozen
class Plain(Query[int]):
    pass


@attrs.define
class NumbersHandler:
    """Records how many items it produced and whether its generator was closed."""

    produced: int = 0
    started: bool = False
    closed: bool = False

    async def handle(self, query: Numbers, context: Context) -> AsyncIterator[int]:
        self.started = True
        try:
            for number in range(query.count):
                if number == query.fail_at:
                    if number == 0:
                        raise NotFoundError("no numbers")
                    raise RuntimeError("secret internal text")
                if query.delay:
                    await asyncio.sleep(query.delay)
                self.produced += 1
                yield number
        finally:
            self.closed = True


class PlainHandler:
    async def handle(self, query: Plain, context: Context) -> int:
        return 1


def bus_for(handler: NumbersHandler, *behaviours: object) -> QueryBus:
    typed: StreamHandler[Numbers, int] = handler
    return QueryBus({Numbers: typed, Plain: PlainHandler()}, behaviours)


async def read_all(stream: Stream[int]) -> list[int]:
    async with stream:
        return [number async for number in stream]


class TestStream:
    """`QueryBus.stream` runs a handler that yields, pulled by the consumer."""

    async def test_gives_every_item_in_order(self) -> None:
        """The Result's data is a Stream of the handler's items."""
        result = await bus_for(NumbersHandler()).stream(Numbers(5))

        assert result.is_success
        assert result.operation_id is not None
        assert await read_all(result.unwrap()) == [0, 1, 2, 3, 4]

    async def test_an_empty_stream_is_a_success(self) -> None:
        """A handler that yields nothing gives an empty stream."""
        handler = NumbersHandler()
        result = await bus_for(handler).stream(Numbers(0))

        assert await read_all(result.unwrap()) == []
        assert handler.closed

    async def test_the_handler_produces_only_as_fast_as_the_consumer_reads(self) -> None:
        """Backpressure: after k items read, the handler has produced k."""
        handler = NumbersHandler()
        result = await bus_for(handler).stream(Numbers(1_000))
        stream = result.unwrap()
        assert handler.produced == 1  # the first item, read to open the stream
        async with stream:
            for expected in range(10):
                assert await anext(stream) == expected
                assert handler.produced == expected + 1

    async def test_stopping_early_closes_the_handler(self) -> None:
        """Leaving ``async with`` after a few items closes the handler's generator."""
        handler = NumbersHandler()
        result = await bus_for(handler, Logging(), Timeout(per_item={Numbers: 5})).stream(Numbers(1_000))
        async with result.unwrap() as stream:
            async for number in stream:
                if number == 3:
                    break

        assert handler.closed
        assert handler.produced == 4

    async def test_cancelling_the_consumer_closes_the_handler(self) -> None:
        """A consumer task cancelled while it waits for an item cancels the handler."""
        handler = NumbersHandler()
        bus = bus_for(handler, Logging())

        async def consume() -> None:
            result = await bus.stream(Numbers(1_000, delay=0.01))
            async with result.unwrap() as stream:
                async for _ in stream:
                    pass

        task = asyncio.create_task(consume())
        for _ in range(1_000):  # poll until the handler is running
            if handler.produced >= 3:
                break
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert handler.closed

    async def test_a_failure_before_the_first_item_is_a_failed_result(self) -> None:
        """A domain error raised before any item becomes the Result, as with execute."""
        handler = NumbersHandler()
        result = await bus_for(handler).stream(Numbers(3, fail_at=0))

        assert result.status is OperationStatus.NOT_FOUND
        assert result.errors == {"detail": "no numbers"}
        assert handler.closed

    async def test_a_failure_after_the_first_item_raises_result_error_logged_once(self) -> None:
        """An unexpected exception mid-stream ends it with ResultError(FAILED), logged once."""
        handler = NumbersHandler()
        result = await bus_for(handler, Logging()).stream(Numbers(5, fail_at=2))
        received: list[int] = []

        async def read() -> None:
            async with result.unwrap() as stream:
                received.extend([number async for number in stream])

        with capture_logs() as logs, pytest.raises(ResultError) as raised:
            await read()

        assert received == []  # the failure came before the list was built
        assert raised.value.result.status is OperationStatus.FAILED
        assert "secret" not in str(raised.value.result.errors)
        assert raised.value.result.operation_id == result.operation_id
        with_traceback = [log for log in logs if "exc_info" in log]
        assert len(with_traceback) == 1
        assert with_traceback[0]["event"] == "stream_completed"
        assert with_traceback[0]["ended"] == "failed"
        assert with_traceback[0]["items"] == 2
        assert handler.closed

    async def test_a_failure_without_logging_is_logged_by_the_bus_once(self) -> None:
        """With no Logging behaviour, the bus logs the mid-stream exception once."""
        result = await bus_for(NumbersHandler()).stream(Numbers(5, fail_at=1))
        with capture_logs() as logs, pytest.raises(ResultError):
            await read_all(result.unwrap())

        assert [log["event"] for log in logs if "exc_info" in log] == ["dispatch_failed"]

    async def test_execute_refuses_a_stream_query_and_stream_a_plain_one(self) -> None:
        """Each kind of query has its own method; the error names the other."""
        bus = bus_for(NumbersHandler())
        with pytest.raises(ConfigurationError, match="is a StreamQuery: run it with"):
            await bus.execute(Numbers(1))  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="is not a StreamQuery"):
            await bus.stream(Plain())  # type: ignore[arg-type]

    async def test_a_handler_that_returns_instead_of_yielding_is_refused(self) -> None:
        """A stream query's handler must give an async iterator."""

        class Returns:
            async def handle(self, query: Numbers, context: Context) -> int:
                return 1

        with pytest.raises(ConfigurationError, match="yields its items"):
            await QueryBus({Numbers: Returns()}).stream(Numbers(1))


class TestStreamBehaviours:
    """The behaviours that apply to a stream, each declared through its ``bind_stream`` hook."""

    async def test_authorization_refuses_before_the_handler_starts(self) -> None:
        """An anonymous caller is refused and the handler never runs."""
        handler = NumbersHandler()
        bus = bus_for(handler, Authorization({Numbers: Authenticated(), Plain: Authenticated()}))

        refused = await bus.stream(Numbers(3))
        allowed = await bus.stream(Numbers(3), ALICE)

        assert refused.status is OperationStatus.UNAUTHENTICATED
        assert await read_all(allowed.unwrap()) == [0, 1, 2]

    async def test_validation_refuses_before_the_handler_starts(self) -> None:
        """An invalid query gets VALIDATION_ERROR; the handler never starts."""
        handler = NumbersHandler()
        result = await bus_for(handler, Validation()).stream(Numbers(-1))

        assert result.status is OperationStatus.VALIDATION_ERROR
        assert result.errors == {"count": "must not be negative"}
        assert not handler.started

    async def test_logging_logs_once_when_the_stream_ends(self) -> None:
        """One stream_completed event with the item count and how the stream ended."""
        bus = bus_for(NumbersHandler(), Logging())
        with capture_logs() as logs:
            await read_all((await bus.stream(Numbers(3))).unwrap())
            result = await bus.stream(Numbers(100))
            async with result.unwrap() as stream:
                await anext(stream)

        assert [(log["event"], log["items"], log["ended"], log["status"]) for log in logs] == [
            ("stream_completed", 3, "completed", "success"),
            ("stream_completed", 1, "closed", "success"),
        ]

    async def test_tracing_spans_the_whole_stream(self) -> None:
        """The span ends with the stream and carries the item count and the ending."""
        exporter = InMemorySpanExporter()
        tracing = Tracing(tracer_provider(exporter).get_tracer("tests"))
        result = await bus_for(NumbersHandler(), tracing).stream(Numbers(4))
        assert exporter.get_finished_spans() == ()
        await read_all(result.unwrap())

        (span,) = exporter.get_finished_spans()
        assert span.name == "query Numbers"
        assert span.attributes is not None
        assert span.attributes["cqrskit.items"] == 4
        assert span.attributes["cqrskit.stream_ended"] == "completed"
        assert span.attributes["cqrskit.status"] == "success"

    async def test_metrics_count_the_stream_when_it_ends(self) -> None:
        """The dispatch counter and the duration see the stream once, at its end."""
        registry = CollectorRegistry()
        result = await bus_for(NumbersHandler(), Metrics(registry)).stream(Numbers(5, fail_at=3))
        labels = {"message_type": "Numbers", "status": "failed", "error_type": "RuntimeError"}
        assert registry.get_sample_value("cqrskit_dispatches_total", labels) is None
        with pytest.raises(ResultError):
            await read_all(result.unwrap())

        assert registry.get_sample_value("cqrskit_dispatches_total", labels) == 1.0
        assert (
            registry.get_sample_value("cqrskit_dispatch_duration_seconds_count", {"message_type": "Numbers"})
            == 1.0
        )

    async def test_timeout_per_item_before_the_first_item_is_a_timeout_result(self) -> None:
        """A first item slower than the per-item bound gives a TIMEOUT Result."""
        handler = NumbersHandler()
        bus = bus_for(handler, Timeout(per_item={Numbers: 0.01}))
        result = await bus.stream(Numbers(3, delay=10))

        assert result.status is OperationStatus.TIMEOUT
        assert handler.closed

    async def test_timeout_per_item_after_the_first_item_ends_the_stream(self) -> None:
        """A later item slower than the bound ends the stream with ResultError(TIMEOUT)."""

        class SlowSecond:
            closed = False

            async def handle(self, query: Numbers, context: Context) -> AsyncIterator[int]:
                try:
                    yield 0
                    await asyncio.sleep(10)
                    yield 1
                finally:
                    SlowSecond.closed = True

        bus = QueryBus({Numbers: SlowSecond()}, [Timeout(per_item={Numbers: 0.01})])
        result = await bus.stream(Numbers(2))
        with pytest.raises(ResultError) as raised:
            await read_all(result.unwrap())

        assert raised.value.result.status is OperationStatus.TIMEOUT
        assert SlowSecond.closed

    async def test_timeout_for_the_whole_stream_counts_every_item(self) -> None:
        """Items that each come quickly still end at the whole stream's deadline."""
        bus = bus_for(NumbersHandler(), Timeout(per_message={Numbers: 0.05}))
        result = await bus.stream(Numbers(1_000_000, delay=0.001))
        with pytest.raises(ResultError) as raised:
            await read_all(result.unwrap())

        assert raised.value.result.status is OperationStatus.TIMEOUT

    def test_retry_stays_out_of_a_stream_pipeline(self) -> None:
        """Items already given cannot be given again, so Retry declines streams."""
        retry = Retry()
        bus = bus_for(NumbersHandler(), Logging(), retry)

        assert retry not in bus.behaviours_for(Numbers)
        assert retry in bus.behaviours_for(Plain)

    def test_query_cache_refuses_a_stream_query(self) -> None:
        """A cache policy for a streaming query is refused when the cache is built."""
        with pytest.raises(ConfigurationError, match="cannot cache Numbers: it is a StreamQuery"):
            QueryCache(InMemoryCache(), {Numbers: CachePolicy(ttl=60)})

    def test_query_cache_stays_out_of_stream_pipelines(self) -> None:
        """A QueryCache on the bus leaves streaming queries alone."""
        cache = QueryCache(InMemoryCache(), {Plain: CachePolicy(ttl=60)})
        bus = bus_for(NumbersHandler(), cache)

        assert bus.behaviours_for(Numbers) == ()

    async def test_a_behaviour_without_bind_stream_runs_around_the_opening(self) -> None:
        """A plain function behaviour sees the opening and a Result whose data is the Stream."""
        seen: list[object] = []

        async def spy(message: object, context: Context, call_next: object) -> object:
            result = await call_next(message, context)  # type: ignore[operator]
            seen.append(type(result.data).__name__)
            return result

        result = await bus_for(NumbersHandler(), spy).stream(Numbers(2))
        assert await read_all(result.unwrap()) == [0, 1]
        assert seen == ["Stream"]
