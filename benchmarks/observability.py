"""Per-dispatch cost of the observability behaviours: Logging, Tracing, Metrics, Audit.

Run: ``PYTHONPATH=src:. python -m benchmarks.observability``. Prints, for each pipeline, the median
time per dispatch over repeated runs, and its ratio to calling the handler directly. Nothing is
asserted: timings depend on the machine.
"""

from __future__ import annotations

import asyncio
import io
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from cqrskit import Command, CommandBus, Context, Principal
from cqrskit.behaviours import Audit, AuditRecord, Logging, Metrics, Tracing

DISPATCHES = 4000
REPEATS = 7


@attrs.frozen
class Register(Command[str]):
    email: str
    password: str = attrs.field(metadata={"sensitive": True}, repr=False)


class RegisterHandler:
    async def handle(self, command: Register, context: Context) -> str:
        return command.email


class NullSink:
    async def write(self, record: AuditRecord) -> None:
        return None


def filtered_logger(level: int, *, lazy: bool, cached: bool = False) -> Any:
    """A logger filtered at `level` whose events go nowhere (no global configuration touched)."""
    wrapper = structlog.make_filtering_bound_logger(level)
    sink = structlog.PrintLogger(io.StringIO())
    processors: list[Any] = [structlog.processors.KeyValueRenderer()]
    if lazy:
        return structlog.wrap_logger(
            sink, processors=processors, wrapper_class=wrapper, cache_logger_on_first_use=cached
        )
    return wrapper(structlog.ReturnLogger(), processors, {})


def pipelines() -> dict[str, list[object]]:
    sdk_tracer = TracerProvider().get_tracer("bench")  # no span processor: spans are made, not exported
    return {
        "bus, no behaviours": [],
        "Logging, concrete logger filtered at warning": [
            Logging(filtered_logger(logging.WARNING, lazy=False))
        ],
        "Logging, lazy logger filtered at warning": [Logging(filtered_logger(logging.WARNING, lazy=True))],
        "Logging, lazy logger cached on first use, at warning": [
            Logging(filtered_logger(logging.WARNING, lazy=True, cached=True))
        ],
        "Logging, concrete logger at info (renders)": [Logging(filtered_logger(logging.INFO, lazy=False))],
        "Tracing, no-op tracer": [Tracing(trace.NoOpTracer())],
        "Tracing, SDK tracer, no exporter": [Tracing(sdk_tracer)],
        "Metrics": [Metrics(CollectorRegistry())],
        "Audit, null sink": [Audit(NullSink())],
        "all four (SDK tracer, logging filtered at warning)": [
            Tracing(sdk_tracer),
            Logging(filtered_logger(logging.WARNING, lazy=False)),
            Metrics(CollectorRegistry()),
            Audit(NullSink()),
        ],
    }


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    """Seconds per call over one run of DISPATCHES calls."""
    started = time.perf_counter()
    for _ in range(DISPATCHES):
        await call()
    return (time.perf_counter() - started) / DISPATCHES


async def run() -> list[tuple[str, float]]:
    message = Register("a@example.com", "hunter2")
    handler = RegisterHandler()
    context = Context(principal=Principal("alice"), operation_id="op")
    user_context = Context(principal=Principal("alice"))
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "handler called directly": lambda: handler.handle(message, context)
    }
    for name, behaviours in pipelines().items():
        bus = CommandBus({Register: handler}, behaviours)
        calls[name] = lambda bus=bus: bus.execute(message, user_context)
    for call in calls.values():  # warm up: caches, label children, first-use logger caching
        for _ in range(200):
            await call()
    # Rounds interleave the pipelines, so a burst of load on a shared machine hits them all alike.
    runs: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(REPEATS):
        for name, call in calls.items():
            runs[name].append(await timed(call))
    return [(name, statistics.median(times)) for name, times in runs.items()]


def main() -> None:
    rows = asyncio.run(run())
    direct = rows[0][1]
    bare = rows[1][1]
    print(f"median of {REPEATS} runs of {DISPATCHES} dispatches each")
    print(f"| {'pipeline':<52} | {'us/dispatch':>11} | {'x direct':>8} | {'+us over bus':>12} |")
    print(f"|{'-' * 54}|{'-' * 13}|{'-' * 10}|{'-' * 14}|")
    for name, seconds in rows:
        extra = "" if seconds is direct else f"{(seconds - bare) * 1e6:.2f}"
        print(f"| {name:<52} | {seconds * 1e6:>11.2f} | {seconds / direct:>8.1f} | {extra:>12} |")


if __name__ == "__main__":
    main()
