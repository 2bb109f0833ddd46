"""Unit tests of cqrskit.caching._flight: SingleFlight, the one-load-per-key machinery under QueryCache."""

from __future__ import annotations

import asyncio

import pytest

from cqrskit.caching._flight import SingleFlight


class Gate:
    """A load that counts its runs and waits for `release` before returning `value` (or raising)."""

    def __init__(self, value: str = "v", error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.runs = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> str:
        self.runs += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


class TestSingleFlight:
    """Concurrent loads of one key run once; a cancelled loader hands over to a waiter."""

    async def test_concurrent_callers_share_one_load(self) -> None:
        """Ten callers of one key: one load, one leader, nine followers with the same value."""
        flight: SingleFlight[str] = SingleFlight()
        gate = Gate()
        tasks = [asyncio.create_task(flight.run("k", gate)) for _ in range(10)]
        await gate.started.wait()
        gate.release.set()
        outcomes = await asyncio.gather(*tasks)
        assert gate.runs == 1
        assert sorted(led for _, led in outcomes) == [False] * 9 + [True]
        assert {value for value, _ in outcomes} == {"v"}

    async def test_other_keys_load_on_their_own(self) -> None:
        """Different keys never wait for each other."""
        flight: SingleFlight[str] = SingleFlight()
        first, second = Gate("a"), Gate("b")
        a = asyncio.create_task(flight.run("a", first))
        b = asyncio.create_task(flight.run("b", second))
        await first.started.wait()
        await second.started.wait()
        first.release.set()
        second.release.set()
        assert await a == ("a", True)
        assert await b == ("b", True)

    async def test_the_loaders_exception_reaches_every_waiter(self) -> None:
        """When the load raises, the leader and every follower get that error; it ran once."""
        flight: SingleFlight[str] = SingleFlight()
        gate = Gate(error=LookupError("gone"))
        tasks = [asyncio.create_task(flight.run("k", gate)) for _ in range(3)]
        await gate.started.wait()
        gate.release.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert gate.runs == 1
        assert all(isinstance(outcome, LookupError) for outcome in outcomes)

    async def test_a_cancelled_loader_hands_over_to_a_waiter(self) -> None:
        """Cancelling the leader cancels only it: a waiter runs the load and the others share it."""
        flight: SingleFlight[str] = SingleFlight()
        gate = Gate()
        leader = asyncio.create_task(flight.run("k", gate))
        await gate.started.wait()
        waiters = [asyncio.create_task(flight.run("k", gate)) for _ in range(3)]
        await asyncio.sleep(0)
        gate.started.clear()
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        await gate.started.wait()  # the first waiter to look again found no load running: it loads
        await asyncio.sleep(0)  # the others look again and wait for it
        gate.release.set()
        outcomes = await asyncio.gather(*waiters)
        assert gate.runs == 2
        assert sorted(led for _, led in outcomes) == [False, False, True]
