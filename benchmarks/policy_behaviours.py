"""What Timeout, Authorization, Validation and Retry cost per dispatch on the success path.

Run: ``PYTHONPATH=src:. python -m benchmarks.policy_behaviours``. Each row is the median, over
repeated runs, of the mean time per dispatch of a loop of dispatches awaited one after another; the
ratio is to a direct ``await handler.handle(message, context)``. Nothing touches a database.
``asyncio.timeout`` is measured through a stand-in behaviour built on it, for comparison with
`Timeout`'s shared deadline queue. The last two rows put Logging in front, its logger filtered at
warning (so its info event is dropped, as in production): the full pipeline of
`benchmarks._full_pipeline`, which `benchmarks.dispatch` times too.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._full_pipeline import CONTEXT, MESSAGE, CreateUser, CreateUserHandler, full_pipeline
from cqrskit import CommandBus, Context, OperationStatus, Result
from cqrskit.behaviours import Authorization, RequirePermissions, Retry, Timeout, Validation

DISPATCHES = 20_000
REPEATS = 7


class AsyncioTimeout:
    """Timeout built on asyncio.timeout, as a reference."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __call__(self, message: Any, context: Context, call_next: Any) -> Result[Any]:
        try:
            async with asyncio.timeout(self.seconds) as scope:
                return await call_next(message, context)
        except TimeoutError:
            if scope.expired():
                return Result.failure(OperationStatus.TIMEOUT, {"detail": "timed out"})
            raise


async def mean_per_call(run: Callable[[], Awaitable[object]]) -> float:
    """Mean nanoseconds per call of `run`, over DISPATCHES calls awaited one after another."""
    started = time.perf_counter_ns()
    for _ in range(DISPATCHES):
        await run()
    return (time.perf_counter_ns() - started) / DISPATCHES


async def medians(runs: list[tuple[str, Callable[[], Awaitable[object]]]]) -> list[tuple[str, float]]:
    """Median of REPEATS means for each run; the runs take turns, so a load change hits them all."""
    samples: dict[str, list[float]] = {name: [] for name, _ in runs}
    for _ in range(REPEATS):
        for name, run in runs:
            samples[name].append(await mean_per_call(run))
    return [(name, statistics.median(samples[name])) for name, _ in runs]


async def measure() -> list[tuple[str, float]]:
    handler, message, context = CreateUserHandler(), MESSAGE, CONTEXT
    rules = {CreateUser: RequirePermissions("user:create")}
    timeout, authorization, validation, retry = Timeout(30), Authorization(rules), Validation(), Retry()
    policy = [timeout, authorization, validation, retry]
    stacks: list[tuple[str, list[object]]] = [
        ("bus, no behaviours", []),
        ("Timeout (deadline queue)", [timeout]),
        ("asyncio.timeout stand-in", [AsyncioTimeout(30)]),
        ("Authorization", [authorization]),
        ("Validation", [validation]),
        ("Retry", [retry]),
        ("Authorization, Validation, Retry", [authorization, validation, retry]),
        ("Timeout, Authorization, Validation, Retry", policy),
        ("same with asyncio.timeout", [AsyncioTimeout(30), authorization, validation, retry]),
        ("Logging + the four (full pipeline)", full_pipeline()),
        ("Logging + the four, without Timeout", full_pipeline(timeout=False)),
    ]
    runs: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("direct handler call", lambda: handler.handle(message, context))
    ]
    for name, stack in stacks:
        bus = CommandBus({CreateUser: handler}, stack)
        result = await bus.execute(message, context)
        if result.status is not OperationStatus.SUCCESS:
            raise RuntimeError(f"{name}: the benchmark dispatch failed: {result!r}")
        runs.append((name, lambda bus=bus: bus.execute(message, context)))
    return await medians(runs)


def main() -> None:
    rows = asyncio.run(measure())
    direct = rows[0][1]
    bus = rows[1][1]
    print(f"policy behaviours, success path: median of {REPEATS} runs x {DISPATCHES} dispatches")
    print()
    print(f"| {'pipeline':<44} | {'ns/dispatch':>11} | {'over bare bus':>13} | {'x direct':>8} |")
    print(f"|{'-' * 46}|{'-' * 12}:|{'-' * 14}:|{'-' * 9}:|")
    for name, nanoseconds in rows:
        over = "" if name == "direct handler call" else f"{nanoseconds - bus:+.0f}"
        print(f"| {name:<44} | {nanoseconds:>11.0f} | {over:>13} | {nanoseconds / direct:>8.1f} |")


if __name__ == "__main__":
    main()
