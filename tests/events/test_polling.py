"""Unit tests of the loop the relay and the due-command loops share (cqrskit.events._polling)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from cqrskit.events._polling import PollingLoop

GENEROUS = 10.0  # seconds: an await that should end at once


async def test_a_pass_that_did_work_is_followed_at_once_and_an_idle_one_waits_for_a_wake() -> None:
    """Passes with work run back to back; after an idle pass only `wake` starts one (the poll is an hour)."""
    loop = PollingLoop(poll_interval=3600.0, error_backoff=3600.0)
    work = [1, 1, 0]
    calls: list[int] = []
    idle = asyncio.Event()

    async def one_pass() -> int:
        calls.append(len(calls))
        done = work.pop(0) if work else 0
        if done == 0:
            idle.set()
        return done

    task = asyncio.create_task(loop.run(one_pass, lambda exc: None))
    await asyncio.wait_for(idle.wait(), GENEROUS)
    assert len(calls) == 3
    idle.clear()
    loop.wake()
    await asyncio.wait_for(idle.wait(), GENEROUS)
    assert len(calls) == 4
    loop.stop()
    await asyncio.wait_for(task, GENEROUS)


async def test_a_failed_pass_is_reported_and_the_loop_goes_on() -> None:
    """An exception goes to `failed`, the loop backs off, and a wake runs the next pass."""
    loop = PollingLoop(poll_interval=3600.0, error_backoff=3600.0)
    reported: list[Exception] = []
    was_reported = asyncio.Event()
    passes = 0
    second = asyncio.Event()

    def failed(exc: Exception) -> None:
        reported.append(exc)
        was_reported.set()

    async def one_pass() -> int:
        nonlocal passes
        passes += 1
        if passes == 1:
            raise RuntimeError("database away")
        second.set()
        return 0

    task = asyncio.create_task(loop.run(one_pass, failed))
    await asyncio.wait_for(was_reported.wait(), GENEROUS)
    loop.wake()
    await asyncio.wait_for(second.wait(), GENEROUS)
    assert [str(e) for e in reported] == ["database away"]
    loop.stop()
    await asyncio.wait_for(task, GENEROUS)


async def test_around_is_entered_first_and_a_stop_inside_it_is_kept() -> None:
    """`started` waits for `around`; a stop while it is being entered ends the loop before any pass."""
    loop = PollingLoop(poll_interval=3600.0, error_backoff=3600.0)
    entered, leave = asyncio.Event(), asyncio.Event()
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def around() -> AsyncIterator[None]:
        events.append("enter")
        entered.set()
        await leave.wait()
        yield
        events.append("exit")

    async def one_pass() -> int:
        events.append("pass")
        return 0

    task = asyncio.create_task(loop.run(one_pass, lambda exc: None, around()))
    await asyncio.wait_for(entered.wait(), GENEROUS)
    loop.stop()  # while `around` is still being entered
    leave.set()
    await asyncio.wait_for(task, GENEROUS)
    assert events == ["enter", "exit"]
    assert loop.stopping
