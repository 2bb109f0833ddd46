"""One trace from the request that recorded an event to the handler that applied it, across processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cqrskit import Context
from tests.integration.operate.app import Happened
from tests.integration.operate.conftest import Stage, eventually

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def test_the_consumer_joins_the_trace_of_the_request(stage: Stage, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    # Three "requests", each its own trace, each recording one event in its transaction.
    for index in range(3):
        with tracer.start_as_current_span(f"POST /happened/{index}"):
            await stage.record(Happened(f"t{index}", key="same"), context=Context(correlation_id=f"c{index}"))
    requests = {span.name: format(span.context.trace_id, "032x") for span in exporter.get_finished_spans()}
    assert len(set(requests.values())) == 3

    relay_spans, consumer_spans = tmp_path / "relay-spans.jsonl", tmp_path / "consumer-spans.jsonl"
    consumer = stage.start("consume", OP_SPANS_FILE=str(consumer_spans))
    await consumer.ready()
    relay = stage.start("relay", OP_SPANS_FILE=str(relay_spans))  # one batch: the three rows share a key
    await relay.ready()

    async def all_applied() -> bool:
        return len(await stage.effects()) == 3

    await eventually(all_applied, "the three events applied")
    assert await consumer.terminate() == 0
    assert await relay.terminate() == 0

    by_event = {row.event_id: row.trace_id for row in await stage.effects()}
    for index in range(3):  # inside the handler, in the consumer process: the request's trace
        assert by_event[f"t{index}"] == requests[f"POST /happened/{index}"]

    consumed = spans(consumer_spans)
    for index in range(3):
        trace_id = requests[f"POST /happened/{index}"]
        in_trace = {span["name"]: span for span in consumed if span["trace_id"] == trace_id}
        assert set(in_trace) == {"consume Happened", "message Happened"}
        # The bus's Tracing span is a child of the consumer's, which continues the request's trace.
        assert in_trace["message Happened"]["parent_id"] == in_trace["consume Happened"]["span_id"]
        assert in_trace["consume Happened"]["parent_id"] is not None

    published = [span for span in spans(relay_spans) if span["name"] == "outbox publish"]
    assert len(published) == 1  # one batch serving three traces: a span of its own with a link to each
    assert sorted(published[0]["links"]) == sorted(requests.values())
    assert all(span["pid"] != published[0]["pid"] for span in consumed)


async def test_a_batch_of_one_trace_continues_it(stage: Stage, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("POST /happened") as request:
        await stage.record(Happened("solo"), context=Context())
    trace_id = format(request.get_span_context().trace_id, "032x")
    relay_spans = tmp_path / "relay-spans.jsonl"
    consumer = stage.start("consume")
    await consumer.ready()
    relay = stage.start("relay", OP_SPANS_FILE=str(relay_spans))
    await relay.ready()

    async def applied() -> bool:
        return len(await stage.effects()) == 1

    await eventually(applied, "the event applied")
    assert await relay.terminate() == 0
    assert await consumer.terminate() == 0
    (published,) = [span for span in spans(relay_spans) if span["name"] == "outbox publish"]
    assert published["trace_id"] == trace_id
    assert published["parent_id"] == format(request.get_span_context().span_id, "016x")
