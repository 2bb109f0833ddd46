"""The part of PromQL that docs/_static/grafana-cqrskit.json uses, evaluated over scraped samples.

It exists so that the dashboard's picture (docs/_tools/dashboard.py) is drawn from the dashboard's own
expressions rather than from a hand-written copy of them. It understands exactly what the panels use:

- vector selectors with ``label="value"`` matchers, and range selectors (``metric[5m]``) as the
  argument of ``rate`` and ``increase``, which extrapolate as Prometheus does (counter resets
  included);
- ``histogram_quantile(q, ...)`` over ``le`` buckets, interpolating linearly within a bucket;
- the aggregations ``sum`` and ``max``, with or without ``by (labels)`` before the operand;
- Grafana's ``$__rate_interval``, which the caller sets (Grafana makes it four scrape intervals).

Anything else (another function, operator, matcher or variable) raises `UnsupportedQueryError` when the
expression is parsed: the picture is never drawn from an expression this module would misread.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Union

import attrs

__all__ = [
    "LOOKBACK",
    "Aggregation",
    "Call",
    "Labels",
    "Number",
    "Samples",
    "Selector",
    "UnsupportedQueryError",
    "evaluate",
    "parse",
    "selectors",
]

LOOKBACK = 300.0
"""Seconds an instant selector looks back for a sample, as Prometheus's default lookback delta."""

Labels = frozenset[tuple[str, str]]
"""A series' labels, ``__name__`` included for a raw series."""

_AGGREGATIONS = frozenset({"sum", "max"})
_RANGE_FUNCTIONS = frozenset({"rate", "increase"})
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class UnsupportedQueryError(ValueError):
    """An expression uses PromQL this evaluator does not implement (or is not PromQL at all)."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"{reason} in {expression!r}")
        self.expression = expression
        self.reason = reason


@attrs.frozen
class Number:
    """A number literal (the quantile of ``histogram_quantile``)."""

    value: float


@attrs.frozen
class Selector:
    """``name{label="value", ...}``, with `range` seconds when it is a range selector."""

    name: str
    matchers: tuple[tuple[str, str], ...] = ()
    range: float | None = None


@attrs.frozen
class Call:
    """``rate(...)``, ``increase(...)`` or ``histogram_quantile(q, ...)``."""

    function: str
    arguments: tuple[Node, ...]


@attrs.frozen
class Aggregation:
    """``sum``/``max``, over everything or ``by (labels)``."""

    operator: str
    by: tuple[str, ...] | None
    operand: Node


Node = Union[Number, Selector, Call, Aggregation]  # noqa: UP007 - attrs resolves it at runtime

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<duration>\d+(?:ms|s|m|h|d)(?![A-Za-z0-9_]))
      | (?P<number>\d+(?:\.\d+)?(?![A-Za-z0-9_.]))
      | (?P<identifier>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<punctuation>!=|=~|!~|[(){}\[\],=])
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens = []
    for match in _TOKEN.finditer(expression):
        kind = match.lastgroup
        if kind is None:
            continue
        text = match.group(kind)
        if kind == "other":
            raise UnsupportedQueryError(expression, f"unexpected {text!r}")
        tokens.append((kind, text))
    return tokens


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokens(expression)
        self.position = 0

    def fail(self, reason: str) -> UnsupportedQueryError:
        return UnsupportedQueryError(self.expression, reason)

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, text: str | None = None, kind: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise self.fail(f"expected {text or kind}, found the end")
        if (text is not None and token[1] != text) or (kind is not None and token[0] != kind):
            raise self.fail(f"expected {text or kind}, found {token[1]!r}")
        self.position += 1
        return token[1]

    def parse(self) -> Node:
        node = self.expression_node()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r} (binary operators are not supported)")  # type: ignore[index]
        return node

    def expression_node(self) -> Node:
        token = self.peek()
        if token is None:
            raise self.fail("empty expression")
        kind, text = token
        if kind == "number":
            self.position += 1
            return Number(float(text))
        if kind != "identifier":
            raise self.fail(f"unexpected {text!r}")
        following = self.tokens[self.position + 1] if self.position + 1 < len(self.tokens) else None
        if text in _AGGREGATIONS:
            return self.aggregation()
        if following is not None and following[1] == "(":
            return self.call()
        if text in {"by", "without", "on", "ignoring", "offset", "bool", "and", "or", "unless"}:
            raise self.fail(f"{text!r} is not supported here")
        return self.selector()

    def aggregation(self) -> Aggregation:
        operator = self.take(kind="identifier")
        by: tuple[str, ...] | None = None
        if self.peek() == ("identifier", "by"):
            self.position += 1
            by = self.label_list()
        elif self.peek() == ("identifier", "without"):
            raise self.fail("'without' is not supported")
        self.take("(")
        operand = self.expression_node()
        self.take(")")
        if self.peek() in {("identifier", "by"), ("identifier", "without")}:
            raise self.fail("a grouping after the operand is not supported: write it before")
        return Aggregation(operator, by, operand)

    def label_list(self) -> tuple[str, ...]:
        self.take("(")
        labels = [self.take(kind="identifier")]
        while self.peek() == ("punctuation", ","):
            self.position += 1
            labels.append(self.take(kind="identifier"))
        self.take(")")
        return tuple(labels)

    def call(self) -> Call:
        function = self.take(kind="identifier")
        if function not in _RANGE_FUNCTIONS and function != "histogram_quantile":
            raise self.fail(f"the function {function}() is not supported")
        self.take("(")
        arguments = [self.expression_node()]
        while self.peek() == ("punctuation", ","):
            self.position += 1
            arguments.append(self.expression_node())
        self.take(")")
        if function in _RANGE_FUNCTIONS:
            if len(arguments) != 1 or not isinstance(arguments[0], Selector) or arguments[0].range is None:
                raise self.fail(f"{function}() takes one range selector")
        elif len(arguments) != 2 or not isinstance(arguments[0], Number):  # noqa: PLR2004 - q and a vector
            raise self.fail("histogram_quantile() takes a number and a vector")
        return Call(function, tuple(arguments))

    def selector(self) -> Selector:
        name = self.take(kind="identifier")
        matchers: list[tuple[str, str]] = []
        if self.peek() == ("punctuation", "{"):
            self.position += 1
            while self.peek() != ("punctuation", "}"):
                label = self.take(kind="identifier")
                operator = self.take(kind="punctuation")
                if operator != "=":
                    raise self.fail(f"the matcher {operator!r} is not supported (only '=')")
                value = self.take(kind="string")
                matchers.append((label, value[1:-1].encode().decode("unicode_escape")))
                if self.peek() == ("punctuation", ","):
                    self.position += 1
            self.take("}")
        seconds: float | None = None
        if self.peek() == ("punctuation", "["):
            self.position += 1
            duration = self.take(kind="duration")
            number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", duration).groups()  # type: ignore[union-attr]
            seconds = int(number) * _UNITS[unit]
            self.take("]")
        return Selector(name, tuple(matchers), seconds)


def parse(expression: str, variables: Mapping[str, str] | None = None) -> Node:
    """Parse `expression`, after replacing each Grafana variable (``$__rate_interval``) in `variables`.

    Raises `UnsupportedQueryError` for a variable not given or anything this module does not implement.
    """
    for name, value in (variables or {}).items():
        expression = expression.replace(name, value)
    if "$" in expression:
        raise UnsupportedQueryError(expression, "a Grafana variable with no value")
    return _Parser(expression).parse()


def selectors(node: Node) -> Iterator[Selector]:
    """Yield every selector in `node`: the series an expression reads."""
    if isinstance(node, Selector):
        yield node
    elif isinstance(node, Call):
        for argument in node.arguments:
            yield from selectors(argument)
    elif isinstance(node, Aggregation):
        yield from selectors(node.operand)


class Samples:
    """Scraped samples: for each series (its labels, ``__name__`` included), (time, value) in time order."""

    def __init__(self) -> None:
        self.series: dict[Labels, list[tuple[float, float]]] = defaultdict(list)

    def add(self, time: float, name: str, labels: Mapping[str, str], value: float) -> None:
        """Record one sample of the series `name{labels}` taken at `time` (seconds)."""
        self.series[frozenset({**labels, "__name__": name}.items())].append((time, value))

    def names(self) -> set[str]:
        """Every metric name with at least one sample."""
        return {dict(labels)["__name__"] for labels in self.series}

    def matching(self, selector: Selector) -> Iterator[tuple[Labels, list[tuple[float, float]]]]:
        """Yield the series `selector` selects, with their samples."""
        wanted = {("__name__", selector.name), *selector.matchers}
        for labels, points in self.series.items():
            if wanted <= labels:
                yield labels, points


Vector = dict[Labels, float]


def evaluate(node: Node, samples: Samples, time: float) -> Vector:
    """Evaluate `node` at `time` (an instant query): each result series' labels and value."""
    if isinstance(node, Selector):
        if node.range is not None:
            raise UnsupportedQueryError(str(node), "a range selector outside rate() or increase()")
        vector: Vector = {}
        for labels, points in samples.matching(node):
            recent = [value for at, value in points if time - LOOKBACK < at <= time]
            if recent:
                vector[labels] = recent[-1]
        return vector
    if isinstance(node, Aggregation):
        return _aggregate(node, evaluate(node.operand, samples, time))
    if isinstance(node, Call):
        if node.function in _RANGE_FUNCTIONS:
            selector = node.arguments[0]
            assert isinstance(selector, Selector)  # noqa: S101 - checked when parsed
            assert selector.range is not None  # noqa: S101 - checked when parsed
            result: Vector = {}
            for labels, points in samples.matching(selector):
                window = [(at, value) for at, value in points if time - selector.range < at <= time]
                value = _extrapolated(window, time - selector.range, time, node.function == "rate")
                if value is not None:
                    result[_without_name(labels)] = value
            return result
        quantile = node.arguments[0]
        assert isinstance(quantile, Number)  # noqa: S101 - checked when parsed
        return _histogram_quantile(quantile.value, evaluate(node.arguments[1], samples, time))
    raise UnsupportedQueryError(str(node), "a bare number is not a vector")


def _without_name(labels: Labels) -> Labels:
    return frozenset((key, value) for key, value in labels if key != "__name__")


def _aggregate(node: Aggregation, vector: Vector) -> Vector:
    groups: dict[Labels, list[float]] = defaultdict(list)
    for labels, value in vector.items():
        kept = frozenset((k, v) for k, v in labels if node.by is not None and k in node.by)
        groups[kept].append(value)
    combine = sum if node.operator == "sum" else max
    return {labels: float(combine(values)) for labels, values in groups.items()}


def _extrapolated(
    window: list[tuple[float, float]], start: float, end: float, per_second: bool
) -> float | None:
    """Prometheus's extrapolated rate/increase of a counter over (start, end]; None under two samples."""
    if len(window) < 2:  # noqa: PLR2004 - a rate needs two samples
        return None
    first_at, first = window[0]
    last_at, last = window[-1]
    increase = last - first
    for (_, previous), (_, current) in itertools.pairwise(window):
        if current < previous:  # a counter reset: the counter restarted from zero
            increase += previous
    sampled = last_at - first_at
    average_gap = sampled / (len(window) - 1)
    to_start = first_at - start
    to_end = end - last_at
    if increase > 0 and first >= 0:
        # A counter does not go below zero: extrapolate no further back than where it would be 0.
        to_start = min(to_start, sampled * (first / increase))
    threshold = average_gap * 1.1
    covered = sampled
    covered += to_start if to_start < threshold else average_gap / 2
    covered += to_end if to_end < threshold else average_gap / 2
    increase *= covered / sampled
    return increase / (end - start) if per_second else increase


def _histogram_quantile(q: float, vector: Vector) -> Vector:
    buckets: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
    for labels, value in vector.items():
        found = dict(labels)
        if "le" not in found:
            continue  # Prometheus ignores a series without an le label here
        rest = frozenset((k, v) for k, v in labels if k not in {"le", "__name__"})
        buckets[rest].append((float(found["le"]), value))
    return {labels: _quantile(q, sorted(points)) for labels, points in buckets.items()}


def _quantile(q: float, points: list[tuple[float, float]]) -> float:  # noqa: PLR0911 - as Prometheus's
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(points) < 2 or points[-1][0] != math.inf:  # noqa: PLR2004 - a bucket and +Inf
        return math.nan
    counts = list(_monotonic(count for _, count in points))
    total = counts[-1]
    if total == 0:
        return math.nan
    rank = q * total
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(points) - 1:
        return points[-2][0]
    upper = points[index][0]
    if index == 0 and upper <= 0:
        return upper
    lower = 0.0 if index == 0 else points[index - 1][0]
    below = 0.0 if index == 0 else counts[index - 1]
    in_bucket = counts[index] - below
    return lower + (upper - lower) * ((rank - below) / in_bucket)


def _monotonic(counts: Iterable[float]) -> Iterator[float]:
    """Cumulative bucket counts made non-decreasing (rates of separate series can jitter)."""
    highest = -math.inf
    for count in counts:
        highest = max(highest, count)
        yield highest
