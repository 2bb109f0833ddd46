"""A container for the process tests: ``python -m cqrskit relay|consume tests...app:Container``.

Everything comes from ``OP_*`` environment variables, so a test can start the commands as
subprocesses on names of its own. The one subscriber, ``record``, writes an ``effects`` row per event
(with the headers it was delivered with) in the consumer's transaction, after ``OP_DELAY`` seconds;
it raises for an event whose id is in the ``poison`` table, until the test deletes that row.
With ``OP_SPANS_FILE`` set, OpenTelemetry's SDK writes every finished span to that file, one JSON
object a line, and the event bus runs `Tracing`.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import attrs
import sqlalchemy as sa
from dependency_injector import containers, providers

from cqrskit import Context
from cqrskit.events import Consumer, Event, EventBus, Idempotency, OutboxRelay, RabbitMQTransport
from cqrskit.sqlalchemy import Database


@attrs.frozen
class Happened(Event):
    """The test's event: an id, and a key it is ordered by."""

    id: str
    key: str = "k"

    def ordering_key(self) -> str:
        return self.key


def tables(schema: str) -> tuple[sa.Table, sa.Table]:
    """The effects and poison tables of `schema`."""
    metadata = sa.MetaData(schema=schema)
    effects = sa.Table(
        "effects",
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String, nullable=False),
        sa.Column("message_key", sa.String, nullable=True),
        sa.Column("correlation_id", sa.String, nullable=True),
        sa.Column("causation_id", sa.String, nullable=True),
        sa.Column("principal", sa.String, nullable=True),
        sa.Column("trace_id", sa.String, nullable=True),
    )
    poison = sa.Table("poison", metadata, sa.Column("event_id", sa.String, primary_key=True))
    return effects, poison


class Record:
    """The subscriber: one effects row per event, in the consumer's transaction."""

    def __init__(self, database: Database, schema: str, delay: float) -> None:
        self.database = database
        self.effects, self.poison = tables(schema)
        self.delay = delay

    async def handle(self, event: Happened, context: Context) -> None:
        session = self.database.session
        if await session.scalar(sa.select(self.poison.c.event_id).where(self.poison.c.event_id == event.id)):
            raise RuntimeError(f"poison: {event.id}")
        if self.delay:
            await asyncio.sleep(self.delay)
        await session.execute(
            sa.insert(self.effects).values(
                event_id=event.id,
                message_key=event.key,
                correlation_id=context.correlation_id,
                causation_id=context.causation_id,
                principal=context.principal.id if context.principal is not None else None,
                trace_id=_current_trace_id(),
            )
        )


def _current_trace_id() -> str | None:
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def _behaviours() -> list[Any]:
    if not os.environ.get("OP_SPANS_FILE"):
        return []
    from cqrskit.behaviours import Tracing

    return [Tracing()]


def install_span_file() -> None:
    """With ``OP_SPANS_FILE``, send every finished span to that file (one JSON object a line)."""
    path = os.environ.get("OP_SPANS_FILE")
    if not path:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class FileExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            with open(path, "a", encoding="utf-8") as file:  # noqa: PTH123
                for span in spans:
                    parent = span.parent
                    file.write(
                        json.dumps(
                            {
                                "name": span.name,
                                "trace_id": format(span.context.trace_id, "032x"),
                                "span_id": format(span.context.span_id, "016x"),
                                "parent_id": format(parent.span_id, "016x") if parent else None,
                                "links": [format(link.context.trace_id, "032x") for link in span.links],
                                "pid": os.getpid(),
                            }
                        )
                        + "\n"
                    )
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    trace.set_tracer_provider(provider)


class Container(containers.DeclarativeContainer):
    """The relay, the consumer and their parts, from ``OP_*`` variables."""

    settings = providers.Object(os.environ)
    database = providers.Singleton(Database, providers.Callable(os.environ.get, "OP_DATABASE_URL"))
    transport = providers.Singleton(
        RabbitMQTransport,
        providers.Callable(os.environ.get, "OP_RABBITMQ_URL"),
        exchange=providers.Callable(os.environ.get, "OP_EXCHANGE"),
    )
    record = providers.Factory(
        Record,
        database=database,
        schema=providers.Callable(os.environ.get, "OP_SCHEMA"),
        delay=providers.Callable(lambda: float(os.environ.get("OP_DELAY") or 0)),
    )
    event_bus = providers.Singleton(
        EventBus,
        handlers=providers.Dict({Happened: providers.Dict(record=record)}),
        behaviours=providers.Callable(_behaviours),
    )
    relay = providers.Singleton(
        OutboxRelay,
        database=database,
        transport=transport,
        schema=providers.Callable(os.environ.get, "OP_SCHEMA"),
        batch_size=providers.Callable(lambda: int(os.environ.get("OP_BATCH") or 50)),
    )
    idempotency = providers.Singleton(
        Idempotency, database=database, schema=providers.Callable(os.environ.get, "OP_SCHEMA")
    )
    consumer = providers.Singleton(
        Consumer,
        transport=transport,
        bus=event_bus,
        database=database,
        types=providers.Object({"Happened": Happened}),
        queue=providers.Callable(os.environ.get, "OP_QUEUE"),
        schema=providers.Callable(os.environ.get, "OP_SCHEMA"),
        max_attempts=2,
        backoff=0.01,
        concurrency=4,
    )


install_span_file()
