"""What Timeout, Authorization, Validation and Retry cost per dispatch on the success path.

Run: ``PYTHONPATH=src:. python -m benchmarks.policy_behaviours``. Each row is the median, over
repeated runs, of the mean time per dispatch of a loop of dispatches awaited one after another; the
ratio is to a direct ``await handler.handle(message, context)``. Nothing touches a database.
``asyncio.timeout`` is measured through a stand-in behaviour built on it, for comparison with
`Timeout`'s shared deadline queue. Logging is added when ``cqrskit.behaviours.Logging`` exists,
with its logger filtered at warning (so its info event is dropped, as in production).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import structlog

from cqrskit import Command, CommandBus, Context, OperationStatus, Principal, Result, behaviours
from cqrskit.behaviours import Authorization, RequirePermissions, Retry, Timeout, Validation

DISPATCHES = 20_000
REPEATS = 7


@attrs.frozen
class CreateUser(Command[str]):
    email: str
    name: str

    def validate(self) -> Mapping[str, str]:
        errors = {}
        if "@" not in self.email:
            errors["email"] = "must contain @"
        if not self.name:
            errors["name"] = "is required"
        return errors


class CreateUserHandler:
    async def handle(self, command: CreateUser, context: Context) -> str:
        return command.name


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


def logging_behaviour() -> object | None:
    """The Logging behaviour filtered at warning, when the package has one."""
    logging_class = getattr(behaviours, "Logging", None)
    if logging_class is None:
        return None
    logger = structlog.wrap_logger(
        structlog.PrintLogger(), wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    return logging_class(logger=logger)


async def measure() -> list[tuple[str, float]]:
    handler = CreateUserHandler()
    message = CreateUser("ada@example.org", "Ada")
    context = Context(principal=Principal("1", {"user:create"}))
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
    ]
    logging_step = logging_behaviour()
    if logging_step is not None:
        stacks.append(("Logging + the four", [logging_step, *policy]))
        stacks.append(
            ("Logging + the four, without Timeout", [logging_step, authorization, validation, retry])
        )
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
