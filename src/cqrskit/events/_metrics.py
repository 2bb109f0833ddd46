"""`EventMetrics`: Prometheus metrics for the outbox, the relay and the consumer (extra ``prometheus``)."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import attrs

from cqrskit._errors import MissingExtraError
from cqrskit.events._envelope import Envelope

__all__ = ["EventMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@attrs.frozen
class _Instruments:
    pending: Any
    oldest_age: Any
    published: Any
    failed: Any
    consumed: Any
    latency: Any


_instruments: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _instruments_for(registry: Any, prometheus_client: Any) -> _Instruments:
    with _lock:
        found = _instruments.get(registry)
        if found is None:
            found = _instruments[registry] = _Instruments(
                prometheus_client.Gauge(
                    "cqrskit_outbox_pending", "Outbox rows not published yet.", registry=registry
                ),
                prometheus_client.Gauge(
                    "cqrskit_outbox_oldest_age_seconds",
                    "Age of the oldest outbox row not published yet (0 when none).",
                    registry=registry,
                ),
                prometheus_client.Counter(
                    "cqrskit_relay_published", "Messages the relay published.", ("name",), registry=registry
                ),
                prometheus_client.Counter(
                    "cqrskit_relay_failed", "Relay passes that failed and were retried.", registry=registry
                ),
                prometheus_client.Counter(
                    "cqrskit_consumer_messages",
                    "Messages a consumer settled or retried, by outcome: processed, retried, "
                    "dead_lettered, duplicate (a subscriber skipped by its inbox row).",
                    ("queue", "name", "outcome"),
                    registry=registry,
                ),
                prometheus_client.Histogram(
                    "cqrskit_consume_latency_seconds",
                    "From a message's recording (in the committing transaction) to its acknowledgement.",
                    ("queue",),
                    buckets=_LATENCY_BUCKETS,
                    registry=registry,
                ),
            )
        return found


class EventMetrics:
    """An `Observer` that keeps Prometheus metrics of the scale-out path.

    - ``cqrskit_outbox_pending`` and ``cqrskit_outbox_oldest_age_seconds`` (gauges): the backlog, as
      last measured (``python -m cqrskit relay`` measures it every few seconds; or call
      ``observer.backlog(*await relay.backlog())``);
    - ``cqrskit_relay_published_total{name}`` and ``cqrskit_relay_failed_total``;
    - ``cqrskit_consumer_messages_total{queue, name, outcome}``, outcome one of ``processed``,
      ``retried``, ``dead_lettered``, ``duplicate``;
    - ``cqrskit_consume_latency_seconds{queue}``: from recording (in the command's transaction) to
      acknowledgement, measured with the two machines' clocks.

    Give it as ``observer=`` to `OutboxRelay` and `Consumer`. `registry` defaults to
    prometheus-client's global ``REGISTRY``; the metric objects are made once per registry. Needs
    ``pip install cqrskit[prometheus]``; without it, constructing this raises `MissingExtraError`.
    """

    def __init__(self, registry: Any = None) -> None:
        try:
            import prometheus_client  # noqa: PLC0415 - the extra is optional
        except ImportError:
            raise MissingExtraError("EventMetrics", "prometheus", "prometheus-client") from None
        self._registry = prometheus_client.REGISTRY if registry is None else registry
        self._instruments = _instruments_for(self._registry, prometheus_client)

    @property
    def registry(self) -> Any:
        """The prometheus-client registry the metrics live in."""
        return self._registry

    def published(self, envelopes: Sequence[Envelope]) -> None:
        """Count `envelopes` as published, by name."""
        counter = self._instruments.published
        for envelope in envelopes:
            counter.labels(envelope.name).inc()

    def publish_failed(self) -> None:
        """Count a failed relay pass."""
        self._instruments.failed.inc()

    def backlog(self, pending: int, oldest_age: float | None) -> None:
        """Set the backlog gauges."""
        self._instruments.pending.set(pending)
        self._instruments.oldest_age.set(oldest_age or 0.0)

    def processed(self, envelope: Envelope, queue: str) -> None:
        """Count a processed message and observe its latency from recording."""
        self._instruments.consumed.labels(queue, envelope.name, "processed").inc()
        if envelope.created_at:
            self._instruments.latency.labels(queue).observe(max(0.0, time.time() - envelope.created_at))

    def retried(self, envelope: Envelope, queue: str) -> None:
        """Count a retry."""
        self._instruments.consumed.labels(queue, envelope.name, "retried").inc()

    def dead_lettered(self, envelope: Envelope, queue: str) -> None:
        """Count a dead letter."""
        self._instruments.consumed.labels(queue, envelope.name, "dead_lettered").inc()

    def duplicate(self, queue: str, subscriber: str) -> None:
        """Count a subscriber skipped because its inbox row was there."""
        self._instruments.consumed.labels(queue, subscriber, "duplicate").inc()

    def __repr__(self) -> str:
        return f"EventMetrics(registry={self._registry!r})"
