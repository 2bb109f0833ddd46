"""Unit tests of cqrskit.sqlalchemy._completion: finishing a COMMIT when the task is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from cqrskit.sqlalchemy._completion import to_completion


class TestToCompletion:
    """The helper that shields a COMMIT from cancellation."""

    async def test_returns_the_value(self) -> None:
        """Uncancelled, it is a plain await."""

        async def work() -> int:
            return 7

        assert await to_completion(work()) == 7

    async def test_cancellation_waits_for_the_work_and_is_raised_after(self) -> None:
        """The work completes, then the cancellation propagates (never swallowed)."""
        done: list[str] = []
        started = asyncio.Event()

        async def work() -> None:
            started.set()
            await asyncio.sleep(0.05)
            done.append("finished")

        task = asyncio.create_task(to_completion(work()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert done == ["finished"]

    async def test_a_failure_during_cancellation_is_chained(self) -> None:
        """If the work fails while the caller is cancelled, CancelledError is raised from its error."""
        started = asyncio.Event()

        async def work() -> None:
            started.set()
            await asyncio.sleep(0.05)
            raise ValueError("commit failed")

        task = asyncio.create_task(to_completion(work()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as raised:
            await task
        assert isinstance(raised.value.__cause__, ValueError)
