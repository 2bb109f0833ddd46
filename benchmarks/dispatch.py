"""What a dispatch costs: cqrskit's buses against a direct handler call.

Run it with ``PYTHONPATH=src:. python -m benchmarks.dispatch`` (or ``nox -s bench``). Every case
dispatches one trivial command whose handler returns a constant, in a timed loop inside one running
event loop, after a warm-up; the table gives the median of the runs. Cases (f) to (h) time the full
in-memory pipeline of `benchmarks._full_pipeline` (Logging filtered at warning, Timeout,
Authorization, Validation, Retry) against a direct call of its own handler.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from dependency_injector import containers, providers

from benchmarks._full_pipeline import CONTEXT, MESSAGE, CreateUserHandler, full_pipeline
from cqrskit import CallNext, Command, CommandBus, Context, Result

RUNS = 9
DISPATCHES = 10_000
BUILD_RUNS = 7
ROUTES = 1_000


@attrs.frozen
class Ping(Command[int]):
    pass


class PingHandler:
    async def handle(self, command: Ping, context: Context) -> int:
        return 1


class PassThrough:
    """A behaviour that does nothing but call the next step."""

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        return await call_next(message, context)


class Container(containers.DeclarativeContainer):
    ping_handler = providers.Factory(PingHandler)
    command_bus = providers.Singleton(CommandBus, handlers=providers.Dict({Ping: ping_handler.provider}))


def many_routes(count: int) -> dict[type, object]:
    """`count` distinct command types, each with its own handler object."""
    handler = PingHandler()
    return {type(f"Command{n}", (Command,), {"__slots__": ()}): handler for n in range(count)}


async def time_loop(dispatch: Callable[[], Awaitable[Any]], count: int) -> float:
    """Seconds per call of `dispatch`, over `count` calls."""
    started = time.perf_counter()
    for _ in range(count):
        await dispatch()
    return (time.perf_counter() - started) / count


def median_build_seconds() -> float:
    """Median seconds to build a bus of ROUTES routes and 10 behaviours."""
    routes = many_routes(ROUTES)
    behaviours = [PassThrough() for _ in range(10)]
    timings = []
    for _ in range(BUILD_RUNS):
        started = time.perf_counter()
        CommandBus(routes, behaviours)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


async def measure() -> dict[str, float]:
    """Median seconds per dispatch for every case.

    The cases take turns within each run, so a burst of load from elsewhere on the machine slows them
    all alike instead of one.
    """
    command, context, handler = Ping(), Context(), PingHandler()
    buses = {
        "b": CommandBus({Ping: handler}),
        "c3": CommandBus({Ping: handler}, [PassThrough() for _ in range(3)]),
        "c10": CommandBus({Ping: handler}, [PassThrough() for _ in range(10)]),
        "d": Container().command_bus(),
        "e": CommandBus({Ping: handler, **many_routes(ROUTES)}),
    }
    cases: dict[str, Callable[[], Awaitable[Any]]] = {"a": lambda: handler.handle(command, context)}
    for name, bus in buses.items():
        cases[name] = lambda bus=bus: bus.execute(command)  # type: ignore[misc]
    full_handler = CreateUserHandler()
    cases["f"] = lambda: full_handler.handle(MESSAGE, CONTEXT)
    for name, behaviours in (("g", full_pipeline()), ("h", full_pipeline(timeout=False))):
        full_bus = CommandBus({type(MESSAGE): full_handler}, behaviours)
        if not (await full_bus.execute(MESSAGE, CONTEXT)).is_success:
            raise RuntimeError("the full pipeline must take its success path")
        cases[name] = lambda bus=full_bus: bus.execute(MESSAGE, CONTEXT)  # type: ignore[misc]
    for dispatch in cases.values():
        await time_loop(dispatch, DISPATCHES // 4)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in cases}
    gc.collect()
    gc.disable()
    try:
        for _ in range(RUNS):
            for name, dispatch in cases.items():
                samples[name].append(await time_loop(dispatch, DISPATCHES))
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


async def breakdown() -> dict[str, float]:
    """Median seconds of each step a dispatch with no behaviours adds to a direct handler call.

    Each step is timed as a lambda, less the time of an empty lambda.
    """
    from cqrskit._context import dispatch_context
    from cqrskit._operation_ids import state
    from cqrskit._results import WRAPPED_TYPES, handler_result

    handler, context, command, data = PingHandler(), Context(), Ping(), 1
    routes = {Ping: (None, handler.handle)}

    async def one_layer_more(message: Any, context: Context) -> Any:
        return await handler.handle(message, context)

    def per_call(step: Callable[[], object]) -> float:
        return statistics.median(timeit.repeat(step, number=DISPATCHES, repeat=RUNS)) / DISPATCHES

    empty = per_call(lambda: None)
    steps: dict[str, Callable[[], object]] = {
        "operation id (counter + string join)": lambda: f"{state.prefix}{next(state.counter)}",
        "dispatch Context (dispatch_context, 5 slots)": lambda: dispatch_context(None, "op"),
        "Result of a plain value (handler_result, 7 slots)": lambda: handler_result(1, "op"),
        "route lookup by type(message)": lambda: routes[type(command)],
        "  of which: plain value, or a Result/Page? (set lookup)": lambda: type(data) in WRAPPED_TYPES,
    }
    costs = {label: per_call(step) - empty for label, step in steps.items()}
    direct = [await time_loop(lambda: handler.handle(command, context), DISPATCHES) for _ in range(RUNS)]
    layered = [await time_loop(lambda: one_layer_more(command, context), DISPATCHES) for _ in range(RUNS)]
    costs["one more coroutine (execute's own)"] = statistics.median(layered) - statistics.median(direct)
    return costs


CASES = [
    ("a", "(a) direct await handler.handle(cmd, ctx)"),
    ("b", "(b) bus, 0 behaviours"),
    ("c3", "(c) bus, 3 pass-through behaviours"),
    ("c10", "(c) bus, 10 pass-through behaviours"),
    ("d", "(d) bus, handler from a Factory per dispatch (.provider)"),
    ("e", "(e) bus, 0 behaviours, 1,000 routes registered"),
    ("f", "(f) direct await of the full pipeline's handler"),
    ("g", "(g) full pipeline: Logging at warning, Timeout, Authorization, Validation, Retry"),
    ("h", "(h) full pipeline without Timeout"),
]


def main() -> None:
    timings = asyncio.run(measure())
    build = median_build_seconds()
    direct, bare = timings["a"], timings["b"]
    print(f"Python {sys.version.split()[0]}; median of {RUNS} runs of {DISPATCHES:,} dispatches each\n")
    print("| case | per dispatch (ns) | ratio to (a) |")
    print("|---|---:|---:|")
    for key, label in CASES:
        print(f"| {label} | {timings[key] * 1e9:,.0f} | {timings[key] / direct:.1f}x |")
    print()
    print("| derived | measured | aim |")
    print("|---|---:|---|")
    print(f"| (b) overhead over (a) | {(bare - direct) * 1e9:,.0f} ns | (b) <= 8x (a) |")
    for count in (3, 10):
        per_behaviour = (timings[f"c{count}"] - bare) / count
        print(
            f"| cost per pass-through behaviour (from {count}) | {per_behaviour * 1e9:,.0f} ns | <= 150 ns |"
        )
    print(f"| (e) against (b) | {(timings['e'] / bare - 1) * 100:+.1f}% | within 5% |")
    print(f"| build {ROUTES:,} routes x 10 behaviours | {build * 1e3:.1f} ms | < 50 ms |")
    for key, label in (("g", "full pipeline"), ("h", "full pipeline without Timeout")):
        print(f"| {label} against its direct call (f) | {timings[key] / timings['f']:.1f}x | <= 80x |")
    costs = asyncio.run(breakdown())
    print()
    print("| where (b)'s overhead goes: step | ns |")
    print("|---|---:|")
    for label, seconds in costs.items():
        print(f"| {label} | {seconds * 1e9:,.0f} |")
    rest = (bare - direct) - sum(v for label, v in costs.items() if not label.startswith("  of which"))
    print(f"| the rest of `BusCore.dispatch` (its frame, unpacking, branches) | {rest * 1e9:,.0f} |")


if __name__ == "__main__":
    main()
