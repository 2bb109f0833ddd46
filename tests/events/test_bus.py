"""EventBus: subscribers per event type, one Result each, failures isolated, behaviours applied."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
from dependency_injector import containers, providers
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from cqrskit import Command, ConfigurationError, Context, HandlerNotFoundError, NotFoundError, OperationStatus
from cqrskit.behaviours import Logging, Metrics, Retry, RetryPolicy, Timeout, Tracing
from cqrskit.events import Event, EventBus, Idempotency
from cqrskit.sqlalchemy import Database, Transaction
from cqrskit.testing import RecordingBehaviour


@attrs.frozen
class UserCreated(Event):
    user_id: str

    def ordering_key(self) -> str:
        return f"user:{self.user_id}"


@attrs.frozen
class UserDeleted(Event):
    user_id: str


class Journal:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, Context]] = []


class SendWelcome:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: UserCreated, context: Context) -> None:
        self.journal.seen.append(("welcome", event, context))


class CountUsers:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: UserCreated, context: Context) -> None:
        self.journal.seen.append(("count", event, context))


class Broken:
    async def handle(self, event: Event, context: Context) -> None:
        raise RuntimeError("boom")


class Missing:
    async def handle(self, event: Event, context: Context) -> None:
        raise NotFoundError("no such user")


class TestEventBus:
    """EventBus delivers an event to each subscriber through its own composed pipeline."""

    async def test_every_subscriber_runs_in_order_with_one_result_each(self) -> None:
        """Two subscribers both run, in the order given, and each gets a SUCCESS Result."""
        journal = Journal()
        bus = EventBus({UserCreated: [SendWelcome(journal), CountUsers(journal)]})
        results = await bus.publish(UserCreated("1"))
        assert [r.status for r in results] == [OperationStatus.SUCCESS] * 2
        assert [name for name, _, _ in journal.seen] == ["welcome", "count"]

    async def test_each_subscriber_is_a_dispatch_of_its_own(self) -> None:
        """Subscribers get distinct operation ids and share the caller's correlation and causation."""
        journal = Journal()
        bus = EventBus({UserCreated: [SendWelcome(journal), CountUsers(journal)]})
        parent = Context(correlation_id="corr", operation_id="op-1").child()
        results = await bus.publish(UserCreated("1"), parent)
        contexts = [c for _, _, c in journal.seen]
        assert len({c.operation_id for c in contexts}) == 2
        assert {c.correlation_id for c in contexts} == {"corr"}
        assert {c.causation_id for c in contexts} == {"op-1"}
        assert [r.operation_id for r in results] == [c.operation_id for c in contexts]

    async def test_a_failing_subscriber_never_stops_the_others(self) -> None:
        """A subscriber that raises gets FAILED, one that reports NOT_FOUND keeps it, the last still runs."""
        journal = Journal()
        bus = EventBus({UserCreated: [Broken(), Missing(), CountUsers(journal)]})
        results = await bus.publish(UserCreated("1"))
        assert [r.status for r in results] == [
            OperationStatus.FAILED,
            OperationStatus.NOT_FOUND,
            OperationStatus.SUCCESS,
        ]
        assert [name for name, _, _ in journal.seen] == ["count"]
        assert "boom" not in str(results[0].errors)

    async def test_an_event_nobody_subscribes_to_gives_no_results(self) -> None:
        """Publishing an unsubscribed event type is not an error: it returns an empty tuple."""
        assert await EventBus({}).publish(UserDeleted("1")) == ()

    async def test_behaviours_wrap_each_subscriber(self) -> None:
        """A behaviour runs once per subscriber, around it, with the subscriber's own context."""
        journal = Journal()
        recording = RecordingBehaviour("rec")
        bus = EventBus({UserCreated: [SendWelcome(journal), CountUsers(journal)]}, [recording])
        await bus.publish(UserCreated("1"))
        assert recording.phases() == [("rec", "before"), ("rec", "after")] * 2
        assert bus.behaviours_for(UserCreated) == (recording,)

    async def test_subscribers_are_named_after_their_class_or_explicitly(self) -> None:
        """Unnamed subscribers take their class's dotted name; a mapping gives explicit names."""
        journal = Journal()
        bus = EventBus(
            {
                UserCreated: [SendWelcome(journal), SendWelcome(journal)],
                UserDeleted: {"audit": CountUsers(journal)},
            }
        )
        name = f"{SendWelcome.__module__}.SendWelcome"
        assert bus.subscribers(UserCreated) == (name, f"{name}#2")
        assert bus.subscribers(UserDeleted) == ("audit",)
        result = await bus.deliver(UserDeleted("9"), "audit")
        assert result.is_success

    def test_a_key_that_is_not_an_event_is_refused(self) -> None:
        """Mapping a command type on an event bus is a ConfigurationError when the bus is built."""

        @attrs.frozen
        class DoIt(Command[None]):
            pass

        with pytest.raises(ConfigurationError, match="Event subclasses only"):
            EventBus({DoIt: []})

    def test_subscribers_must_be_a_sequence_or_mapping(self) -> None:
        """A single handler where a sequence is expected is refused at build time."""
        with pytest.raises(ConfigurationError, match="sequence of handlers"):
            EventBus({UserCreated: "SendWelcome"})  # type: ignore[dict-item]

    def test_ordering_key_defaults_to_none(self) -> None:
        """An event without an ordering key may be published in any order."""
        assert UserDeleted("1").ordering_key() is None
        assert UserCreated("1").ordering_key() == "user:1"


class EventContainer(containers.DeclarativeContainer):
    journal = providers.Singleton(Journal)
    event_bus = providers.Singleton(
        EventBus,
        handlers=providers.Dict(
            {
                UserCreated: providers.List(
                    providers.Factory(SendWelcome, journal=journal),
                    providers.Factory(CountUsers, journal=journal).provider,
                )
            }
        ),
        behaviours=providers.List(providers.Singleton(RecordingBehaviour, "rec")),
    )


class TestEventBusInAContainer:
    """An EventBus built by a dependency-injector container works like one built by hand."""

    async def test_container_built_bus_delivers(self) -> None:
        """Factories resolve once, `.provider` resolves per delivery; both subscribers run."""
        container = EventContainer()
        bus = container.event_bus()
        results = await bus.publish(UserCreated("7"))
        assert all(r.is_success for r in results)
        assert [name for name, _, _ in container.journal().seen] == ["welcome", "count"]
        assert bus.subscribers(UserCreated)[0].endswith("SendWelcome")


class FlakyOnce:
    """Fails with a lost connection (transient) the first time, then succeeds."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, event: Event, context: Context) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionResetError("lost the connection")


class Hangs:
    async def handle(self, event: Event, context: Context) -> None:
        await asyncio.Event().wait()  # never set: only the Timeout ends it


class TestRealBehavioursOnTheEventBus:
    """Logging, Tracing, Metrics, Retry and Timeout work on an EventBus; command-only ones are refused."""

    async def test_retry_re_runs_a_subscriber_that_failed_transiently(self) -> None:
        """A subscriber that loses its connection once is retried and succeeds; the next runs once."""
        flaky, journal = FlakyOnce(), Journal()
        bus = EventBus({UserCreated: [flaky, CountUsers(journal)]}, [Retry(RetryPolicy(delay=0))])
        results = await bus.publish(UserCreated("1"))
        assert [r.status for r in results] == [OperationStatus.SUCCESS] * 2
        assert flaky.calls == 2
        assert [name for name, _, _ in journal.seen] == ["count"]

    async def test_a_timeout_ends_one_subscriber_and_the_next_still_runs(self) -> None:
        """A subscriber that hangs gets TIMEOUT from Timeout; the one after it still succeeds."""
        journal = Journal()
        bus = EventBus({UserCreated: [Hangs(), CountUsers(journal)]}, [Timeout(default=0.05)])
        results = await bus.publish(UserCreated("1"))
        assert [r.status for r in results] == [OperationStatus.TIMEOUT, OperationStatus.SUCCESS]

    async def test_logging_logs_a_failing_subscriber_once(self) -> None:
        """With Logging on the bus, a subscriber's unexpected error is logged once, with its traceback."""
        bus = EventBus({UserCreated: [Broken()]}, [Logging()])
        with capture_logs() as logs:
            [result] = await bus.publish(UserCreated("1"))
        assert result.status is OperationStatus.FAILED
        errors = [entry for entry in logs if entry["log_level"] == "error"]
        assert len(errors) == 1
        assert errors[0].get("exc_info") is not None

    async def test_an_error_raised_outside_logging_is_still_logged_once(self) -> None:
        """A behaviour listed before Logging raises: Logging never saw it, so the bus logs it, once."""

        async def breaks_first(message: Any, context: Context, call_next: Any) -> Any:
            raise RuntimeError("outside Logging")

        bus = EventBus({UserCreated: [CountUsers(Journal())]}, [breaks_first, Logging()])
        with capture_logs() as logs:
            [result] = await bus.publish(UserCreated("1"))
        assert result.status is OperationStatus.FAILED
        errors = [entry for entry in logs if entry["log_level"] == "error"]
        assert len(errors) == 1
        assert errors[0].get("exc_info") is not None

    async def test_tracing_and_metrics_see_each_subscriber(self) -> None:
        """Tracing makes one span per subscriber and Metrics counts each one's outcome."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        registry = CollectorRegistry()
        journal = Journal()
        bus = EventBus(
            {UserCreated: [Broken(), CountUsers(journal)]},
            [Tracing(provider.get_tracer("tests")), Metrics(registry)],
        )
        await bus.publish(UserCreated("1"))
        spans = exporter.get_finished_spans()
        assert [dict(span.attributes or {})["cqrskit.status"] for span in spans] == ["failed", "success"]

        def count(status: str, error_type: str) -> float | None:
            labels = {"message_type": "UserCreated", "status": status, "error_type": error_type}
            return registry.get_sample_value("cqrskit_dispatches_total", labels)

        assert (count("failed", "RuntimeError"), count("success", "")) == (1.0, 1.0)

    async def test_deliver_to_an_unknown_subscriber_raises(self) -> None:
        """Asking for a subscriber name the bus does not have is a wiring error, not a Result."""
        with pytest.raises(HandlerNotFoundError):
            await EventBus({UserCreated: [Broken()]}).deliver(UserCreated("1"), "nobody")

    def test_command_only_behaviours_are_refused(self) -> None:
        """Transaction and Idempotency act on commands only: an EventBus refuses them when built."""
        database = Database()
        for behaviour in (Transaction(database), Idempotency(database)):
            with pytest.raises(ConfigurationError, match="Command buses only"):
                EventBus({UserCreated: [Broken()]}, [behaviour])
