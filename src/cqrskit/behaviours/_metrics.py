"""`Metrics`: Prometheus counters and a duration histogram per message type (extra ``prometheus``)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, Final

import attrs

from cqrskit._context import Context
from cqrskit._contracts import CallNext, Step
from cqrskit._errors import ConfigurationError, MissingExtraError
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
from cqrskit._streams import CANCELLED as STREAM_CANCELLED
from cqrskit._streams import Stream, watch
from cqrskit.behaviours._outcomes import CANCELLED, exception_status, type_name

__all__ = ["Metrics"]

_DISPATCHES: Final = "cqrskit_dispatches"
"""The counter's name; Prometheus exposes it as ``cqrskit_dispatches_total``."""
_DURATION: Final = "cqrskit_dispatch_duration_seconds"
"""The histogram's name."""

_SUCCESS = OperationStatus.SUCCESS
_FAILED = OperationStatus.FAILED
_perf_counter = time.perf_counter


@attrs.frozen
class _Instruments:
    """The metric objects registered in one registry, shared by every `Metrics` that uses it."""

    dispatches: Any
    duration: Any
    by_tenant: bool


# One set of metric objects per registry: a second bus (or a second Metrics) on the same registry
# reuses them instead of registering the names again, which prometheus-client refuses.
_instruments: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _instruments_for(registry: Any, prometheus_client: Any, by_tenant: bool) -> _Instruments:
    with _lock:
        found = _instruments.get(registry)
        if found is not None:
            if found.by_tenant != by_tenant:
                raise ConfigurationError(
                    f"the Metrics sharing registry {registry!r} must agree on tenant_label: its metrics "
                    f"were registered with tenant_label={found.by_tenant}"
                )
            return found
        tenant = ("tenant",) if by_tenant else ()
        try:
            made = _Instruments(
                prometheus_client.Counter(
                    _DISPATCHES,
                    "Dispatches by message type, status and, for FAILED, exception type.",
                    ("message_type", "status", "error_type", *tenant),
                    registry=registry,
                ),
                prometheus_client.Histogram(
                    _DURATION,
                    "Time from a dispatch entering Metrics to its Result, in seconds.",
                    ("message_type", *tenant),
                    registry=registry,
                ),
                by_tenant,
            )
        except ValueError:
            # Registered in this registry by something other than this module's cache (a reloaded
            # module, say): use what is there.
            collectors = registry._names_to_collectors  # no public lookup exists
            made = _Instruments(collectors[_DISPATCHES + "_total"], collectors[_DURATION], by_tenant)
        _instruments[registry] = made
        return made


class _TypeMetrics:
    """One message type's label children (of one tenant, with ``tenant_label``), resolved once."""

    __slots__ = ("by_outcome", "counter", "duration", "extra", "name", "success")

    def __init__(self, instruments: _Instruments, message_type: type, tenant: str | None = None) -> None:
        self.name = type_name(message_type)
        self.extra: tuple[str, ...] = ("" if tenant is None else tenant,) if instruments.by_tenant else ()
        self.counter = instruments.dispatches
        self.success = instruments.dispatches.labels(self.name, str(_SUCCESS), "", *self.extra)
        self.duration = instruments.duration.labels(self.name, *self.extra)
        self.by_outcome: dict[tuple[str, str], Any] = {}

    def count(self, status: str, error_type: str) -> None:
        key = (status, error_type)
        child = self.by_outcome.get(key)
        if child is None:
            child = self.by_outcome[key] = self.counter.labels(self.name, status, error_type, *self.extra)
        child.inc()


class _TenantMetrics:
    """One message type's label children per tenant, each tenant's resolved on its first dispatch."""

    __slots__ = ("instruments", "message_type", "tenants")

    def __init__(self, instruments: _Instruments, message_type: type) -> None:
        self.instruments = instruments
        self.message_type = message_type
        self.tenants: dict[str | None, _TypeMetrics] = {}

    def of(self, tenant: str | None) -> _TypeMetrics:
        found = self.tenants.get(tenant)
        if found is None:
            found = self.tenants[tenant] = _TypeMetrics(self.instruments, self.message_type, tenant)
        return found


class Metrics:
    """Count dispatches and time them, in Prometheus metrics labelled by message type.

    - ``cqrskit_dispatches_total{message_type, status, error_type}``: one per dispatch; ``status`` is
      the Result's (``"cancelled"`` for a cancelled dispatch) and ``error_type`` names the exception
      type for a FAILED dispatch an exception caused (``""`` otherwise).
    - ``cqrskit_dispatch_duration_seconds{message_type}``: a histogram of how long dispatches took.

    `registry` defaults to prometheus-client's global ``REGISTRY``. The metric objects are made once per
    registry, so any number of buses and `Metrics` objects can share one registry.

    With ``tenant_label=True`` both metrics get a ``tenant`` label too (``""`` for a dispatch without
    one). It is off by default: every tenant multiplies the series by message type and status, so
    turn it on only when the number of tenants is small and known (see the tenancy page of the
    docs); traces and logs carry the tenant either way. Every `Metrics` on one registry must agree
    on it.

    Its place is `Stage.METRICS`: inside Tracing and Logging, outside the rest, so the duration covers
    retries and the status is the caller's.

    Needs ``pip install cqrskit[prometheus]``; without it, constructing this raises `MissingExtraError`.
    """

    __slots__ = ("_instruments", "_registry", "_tenant_label", "_types")
    stage = Stage.METRICS

    def __init__(self, registry: Any = None, *, tenant_label: bool = False) -> None:
        try:
            import prometheus_client  # noqa: PLC0415 - the extra is optional
        except ImportError:
            raise MissingExtraError("Metrics", "prometheus", "prometheus-client") from None
        self._registry = prometheus_client.REGISTRY if registry is None else registry
        self._tenant_label = tenant_label
        self._instruments = _instruments_for(self._registry, prometheus_client, tenant_label)
        self._types: dict[type, _TypeMetrics] = {}

    def bind(self, message_type: type) -> Step:
        """Return this behaviour for `message_type` alone, its label children resolved now."""
        if self._tenant_label:
            return functools.partial(_measured_by_tenant, _TenantMetrics(self._instruments, message_type))
        return functools.partial(_measured, self._for(message_type))

    def bind_stream(self, message_type: type) -> Step:
        """For a streaming query: count it once, when the stream ends, and time it opening to end.

        A stream the consumer closed early counts as SUCCESS; one cancelled as ``cancelled``; one
        that failed after its first item with the status the consumer got.
        """
        if self._tenant_label:
            return functools.partial(
                _measured_stream_by_tenant, _TenantMetrics(self._instruments, message_type)
            )
        return functools.partial(_measured_stream, self._for(message_type))

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return the metric names and the label values `message_type` is recorded under.

        ``tenant_label`` is there only when it is on.
        """
        described: dict[str, object] = {
            "counter": _DISPATCHES + "_total",
            "histogram": _DURATION,
            "message_type_label": type_name(message_type),
        }
        if self._tenant_label:
            described["tenant_label"] = True
        return described

    def _for(self, message_type: type) -> _TypeMetrics:
        metrics = self._types.get(message_type)
        if metrics is None:
            metrics = self._types[message_type] = _TypeMetrics(self._instruments, message_type)
        return metrics

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the rest of the pipeline, then count the dispatch and record its duration.

        A bus never calls this: it runs what `bind` returned. It is here for a direct call.
        """
        return await self.bind(type(message))(message, context, call_next)

    def __repr__(self) -> str:
        if self._tenant_label:
            return f"Metrics(registry={self._registry!r}, tenant_label=True)"
        return f"Metrics(registry={self._registry!r})"


async def _measured(
    metrics: Any, message: Any, context: Context, call_next: CallNext, *, opening: bool = False
) -> Result[Any]:
    started = _perf_counter()
    try:
        result = await call_next(message, context)
    except Exception as exc:
        metrics.duration.observe(_perf_counter() - started)
        status, _ = exception_status(exc)
        metrics.count(str(status), type_name(type(exc)) if status is _FAILED else "")
        raise
    except asyncio.CancelledError:
        metrics.duration.observe(_perf_counter() - started)
        metrics.count(CANCELLED, "")
        raise
    if result.status is _SUCCESS:
        if opening:
            return result  # a stream that opened is counted and timed when it ends
        metrics.duration.observe(_perf_counter() - started)
        metrics.success.inc()
    else:
        metrics.duration.observe(_perf_counter() - started)
        metrics.count(str(result.status), "")
    return result


async def _measured_stream(metrics: Any, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
    started = _perf_counter()
    result = await _measured(metrics, message, context, call_next, opening=True)
    if result.is_failure:
        return result

    def on_end(ended: str, _items: int, error: BaseException | None) -> None:
        metrics.duration.observe(_perf_counter() - started)
        if isinstance(error, Exception):
            status, _ = exception_status(error)
            metrics.count(str(status), type_name(type(error)) if status is _FAILED else "")
        elif ended == STREAM_CANCELLED:
            metrics.count(CANCELLED, "")
        else:
            metrics.success.inc()

    stream: Stream[Any] = result.data
    return result.success(watch(stream, on_end))


async def _measured_by_tenant(
    metrics: _TenantMetrics, message: Any, context: Context, call_next: CallNext
) -> Result[Any]:
    return await _measured(metrics.of(context.tenant), message, context, call_next)


async def _measured_stream_by_tenant(
    metrics: _TenantMetrics, message: Any, context: Context, call_next: CallNext
) -> Result[Any]:
    return await _measured_stream(metrics.of(context.tenant), message, context, call_next)
