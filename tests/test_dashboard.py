"""The Grafana dashboard's queries: its picture's evaluator understands them, and cqrskit exports them."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from docs._tools.promql import (
    Aggregation,
    Call,
    Node,
    Samples,
    UnsupportedQueryError,
    evaluate,
    parse,
    selectors,
)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cqrskit import Command, CommandBus, Context
from cqrskit.behaviours import Metrics
from cqrskit.events import Envelope, Event, EventMetrics

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "_static" / "grafana-cqrskit.json"
VARIABLES = {"$__rate_interval": "8s"}


def targets() -> list[tuple[str, str]]:
    """Every query of the dashboard: (expression, legend format)."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (target["expr"], target.get("legendFormat", ""))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def grouping(node: Node) -> Iterator[str]:
    """Every label an aggregation in `node` groups by."""
    if isinstance(node, Aggregation):
        yield from node.by or ()
        yield from grouping(node.operand)
    elif isinstance(node, Call):
        for argument in node.arguments:
            yield from grouping(argument)


@attrs.frozen
class Moved(Event):
    """An event to put through the metrics."""

    sku: str


@attrs.frozen
class Ping(Command[None]):
    """A command to count."""


class PingHandler:
    async def handle(self, command: Ping, context: Context) -> None:
        return None


async def exported() -> dict[str, set[str]]:
    """Each sample name cqrskit's metrics export, with its labels, after a little of everything."""
    registry = CollectorRegistry()
    metrics = EventMetrics(registry)
    envelope = Envelope.from_event(Moved("A1"))
    metrics.published([envelope])
    metrics.publish_failed()
    metrics.backlog(3, 1.5)
    for outcome in (metrics.processed, metrics.retried, metrics.dead_lettered):
        outcome(envelope, "shop.stats")
    metrics.duplicate("shop.stats", "stats")
    bus = CommandBus({Ping: PingHandler()}, behaviours=[Metrics(registry)])
    await bus.execute(Ping())
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


class TestDashboardQueries:
    """docs/_static/grafana-cqrskit.json against the evaluator and against what cqrskit exports."""

    @pytest.mark.parametrize(("expression", "legend"), targets())
    def test_the_evaluator_understands_it(self, expression: str, legend: str) -> None:
        """Each expression parses, reads at least one series, and evaluates over no samples to nothing."""
        node = parse(expression, VARIABLES)
        assert list(selectors(node))
        assert evaluate(node, Samples(), 0.0) == {}

    @pytest.mark.parametrize(("expression", "legend"), targets())
    async def test_its_metrics_and_labels_are_exported(self, expression: str, legend: str) -> None:
        """Each metric queried is one cqrskit exports, with every label the query matches, groups or shows."""
        names = await exported()
        node = parse(expression, VARIABLES)
        for selector in selectors(node):
            assert selector.name in names, f"{selector.name} is not exported; exported: {sorted(names)}"
            labels = names[selector.name]
            wanted = {label for label, _ in selector.matchers}
            wanted |= set(grouping(node)) | set(re.findall(r"{{(\w+)}}", legend))
            assert wanted <= labels, f"{selector.name} has no label {sorted(wanted - labels)}"

    @pytest.mark.parametrize(
        "expression",
        [
            "irate(x[5m])",
            "x + y",
            "sum(x) by (a)",
            "avg(x)",
            'x{a=~"b"}',
            "rate(x)",
            "x[$__interval]",
            "histogram_quantile(x, y)",
        ],
    )
    def test_an_expression_it_does_not_implement_is_refused(self, expression: str) -> None:
        """Another function, an operator, a regex matcher or an unknown variable: refused, never guessed."""
        with pytest.raises(UnsupportedQueryError):
            parse(expression, VARIABLES)


class TestEvaluation:
    """The evaluator's arithmetic, on samples whose answers are known."""

    def test_rate_and_increase_extrapolate_as_prometheus_does(self) -> None:
        """A counter growing 10 a second, sampled every 2 s: rate 10, increase over 8 s is 80."""
        samples = Samples()
        for at in range(0, 21, 2):
            samples.add(float(at), "c_total", {"q": "a"}, 10.0 * at + 100)
        rate = evaluate(parse("sum by (q) (rate(c_total[8s]))"), samples, 20.0)
        increase = evaluate(parse("sum(increase(c_total[8s]))"), samples, 20.0)
        assert rate == {frozenset({("q", "a")}): pytest.approx(10.0)}
        assert increase == {frozenset(): pytest.approx(80.0)}

    def test_a_counter_reset_counts_what_came_before_it(self) -> None:
        """5, 10, then a restart at 3: the increase is 5 + 3 between the samples, extrapolated."""
        samples = Samples()
        for at, value in ((1.0, 5.0), (2.0, 10.0), (3.0, 3.0)):
            samples.add(at, "c_total", {}, value)
        (value,) = evaluate(parse("sum(increase(c_total[3s]))"), samples, 3.0).values()
        # 8 over the 2 s sampled, extrapolated to the window's start (1 s away: within 1.1 gaps).
        assert value == pytest.approx(8.0 * 3.0 / 2.0)

    def test_histogram_quantile_interpolates_within_the_bucket(self) -> None:
        """10 observations under 0.1 and 10 between 0.1 and 1: the median is 0.1, p75 is 0.55."""
        samples = Samples()
        for le, count in (("0.1", 10.0), ("1.0", 20.0), ("+Inf", 20.0)):
            samples.add(5.0, "h_bucket", {"le": le}, count)
        median = evaluate(parse("histogram_quantile(0.5, max by (le) (h_bucket))"), samples, 5.0)
        p75 = evaluate(parse("histogram_quantile(0.75, max by (le) (h_bucket))"), samples, 5.0)
        assert median == {frozenset(): pytest.approx(0.1)}
        assert p75 == {frozenset(): pytest.approx(0.55)}

    def test_no_observations_give_no_quantile(self) -> None:
        """Empty buckets give NaN, which the picture leaves as a gap, as Grafana does."""
        samples = Samples()
        for le in ("0.1", "+Inf"):
            samples.add(5.0, "h_bucket", {"le": le}, 0.0)
        (value,) = evaluate(parse("histogram_quantile(0.5, max by (le) (h_bucket))"), samples, 5.0).values()
        assert math.isnan(value)
