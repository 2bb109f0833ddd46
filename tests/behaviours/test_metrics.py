from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from structlog.testing import capture_logs

from cqrskit import CommandBus, Context, MissingExtraError, NotFoundError, OperationStatus, Result
from cqrskit.behaviours import Metrics
from tests.behaviours.observed_app import FindUser, ObservedContainer, Register, RegisterHandler

COUNTER = "cqrskit_dispatches_total"
CONTEXT = Context(operation_id="op-1")
STATUSES = [*(str(s) for s in OperationStatus), "cancelled"]


def count(registry: CollectorRegistry, message_type: str, status: str, error_type: str = "") -> float:
    labels = {"message_type": message_type, "status": status, "error_type": error_type}
    return registry.get_sample_value(COUNTER, labels) or 0.0


def total(registry: CollectorRegistry) -> float:
    """Every dispatch counted, whatever its labels."""
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "cqrskit_dispatches"
        for sample in metric.samples
        if sample.name == COUNTER
    )


async def succeed(message: Any, context: Context) -> Result[Any]:
    return Result.success(None)


class TestMetricsDirect:
    """Metrics called with a fake call_next."""

    async def test_counts_a_success_and_times_it(self) -> None:
        """A success adds one to the success counter and one observation to the histogram."""
        registry = CollectorRegistry()
        await Metrics(registry)(FindUser("x"), CONTEXT, succeed)
        assert count(registry, "FindUser", "success") == 1
        histogram_count = registry.get_sample_value(
            "cqrskit_dispatch_duration_seconds_count", {"message_type": "FindUser"}
        )
        assert histogram_count == 1

    async def test_an_unexpected_exception_is_counted_with_its_type(self) -> None:
        """FAILED carries the exception type as a label, and the exception propagates."""
        registry = CollectorRegistry()

        async def broken(message: Any, context: Context) -> Result[Any]:
            raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            await Metrics(registry)(FindUser("x"), CONTEXT, broken)
        assert count(registry, "FindUser", "failed", "ZeroDivisionError") == 1

    async def test_expected_failures_have_no_error_type(self) -> None:
        """A raised NotFoundError and a returned CONFLICT are counted by status with error_type ""."""
        registry = CollectorRegistry()
        metrics = Metrics(registry)

        async def missing(message: Any, context: Context) -> Result[Any]:
            raise NotFoundError

        async def conflict(message: Any, context: Context) -> Result[Any]:
            return Result.failure(OperationStatus.CONFLICT)

        with pytest.raises(NotFoundError):
            await metrics(FindUser("x"), CONTEXT, missing)
        await metrics(FindUser("x"), CONTEXT, conflict)
        assert count(registry, "FindUser", "not_found") == 1
        assert count(registry, "FindUser", "conflict") == 1

    async def test_a_cancelled_dispatch_is_counted_as_cancelled(self) -> None:
        """Cancellation is counted and propagates."""
        registry = CollectorRegistry()

        async def cancelled(message: Any, context: Context) -> Result[Any]:
            raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await Metrics(registry)(FindUser("x"), CONTEXT, cancelled)
        assert count(registry, "FindUser", "cancelled") == 1

    async def test_many_metrics_objects_share_one_registry(self) -> None:
        """Several Metrics on one registry reuse the same metric objects: no Duplicated timeseries."""
        registry = CollectorRegistry()
        first, second = Metrics(registry), Metrics(registry)
        await first(FindUser("x"), CONTEXT, succeed)
        await second(FindUser("x"), CONTEXT, succeed)
        assert count(registry, "FindUser", "success") == 2

    async def test_metrics_registered_by_someone_else_are_reused(self) -> None:
        """When the registry already holds the counter (made elsewhere), Metrics uses it."""
        registry = CollectorRegistry()
        existing = Counter(
            "cqrskit_dispatches",
            "made elsewhere",
            ("message_type", "status", "error_type"),
            registry=registry,
        )
        from prometheus_client import Histogram

        Histogram("cqrskit_dispatch_duration_seconds", "made elsewhere", ("message_type",), registry=registry)
        metrics = Metrics(registry)
        await metrics(FindUser("x"), CONTEXT, succeed)
        # The registry refuses a second collector of that name, so this sample is `existing`'s.
        assert count(registry, "FindUser", "success") == 1
        assert existing.describe()[0].name == "cqrskit_dispatches"

    def test_describe_and_repr(self) -> None:
        """describe() names the metrics and the label; the repr shows the registry."""
        metrics = Metrics(CollectorRegistry())
        assert metrics.describe(Register) == {
            "counter": "cqrskit_dispatches_total",
            "histogram": "cqrskit_dispatch_duration_seconds",
            "message_type_label": "Register",
        }
        assert repr(metrics).startswith("Metrics(registry=<prometheus_client")

    def test_without_prometheus_client_it_says_which_extra_to_install(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Constructing Metrics without prometheus-client raises MissingExtraError naming the extra."""
        monkeypatch.setitem(sys.modules, "prometheus_client", None)
        with pytest.raises(MissingExtraError, match=r"pip install cqrskit\[prometheus\]"):
            Metrics()


class TestMetricsThroughTheBus:
    """Metrics in buses built from a DeclarativeContainer."""

    async def test_counters_per_status_sum_to_the_number_of_dispatches(self) -> None:
        """Successes, conflicts, failures and not-founds add up to every dispatch made."""
        container = ObservedContainer()
        commands, queries = container.command_bus(), container.query_bus()
        emails = ["a@example.com", "b@example.com", "taken@example.com", "boom@example.com", "a@example.com"]
        with capture_logs():
            results = [await commands.execute(Register(email, "pw")) for email in emails]
            results.append(await queries.execute(FindUser("a@example.com")))
            results.append(await queries.execute(FindUser("nobody@example.com")))
        registry = container.registry()
        by_status = {
            status: sum(
                count(registry, t, status, e) for t in ("Register", "FindUser") for e in ("", "RuntimeError")
            )
            for status in STATUSES
        }
        assert sum(by_status.values()) == len(results) == total(registry)
        assert by_status["success"] == 3
        assert by_status["conflict"] == 2
        assert by_status["not_found"] == 1
        assert count(registry, "Register", "failed", "RuntimeError") == 1
        assert [r.status for r in results].count(OperationStatus.SUCCESS) == 3

    async def test_two_buses_share_one_registry(self) -> None:
        """A second bus, with its own Metrics, counts into the same registry without raising."""
        container = ObservedContainer()
        registry = container.registry()
        other = CommandBus({Register: RegisterHandler({}, container.hang())}, [Metrics(registry)])
        with capture_logs():
            await container.command_bus().execute(Register("a@example.com", "pw"))
            await other.execute(Register("a@example.com", "pw"))
        assert count(registry, "Register", "success") == 2
