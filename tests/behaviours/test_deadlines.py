"""Unit tests of cqrskit.behaviours._deadlines: the queue behind Timeout."""

from __future__ import annotations

import asyncio

from cqrskit.behaviours._deadlines import DeadlineQueue

BOUND = 10  # seconds: a deadline no test reaches


class TestDeadlineQueue:
    """The queue that serves every deadline of one duration on one loop with one timer."""

    async def test_finished_entries_leave_the_queue(self) -> None:
        """Entries finished in order leave at once; the queue ends empty."""
        task = asyncio.current_task()
        assert task is not None
        queue = DeadlineQueue(asyncio.get_running_loop(), BOUND)
        entries = [queue.start(task) for _ in range(10)]
        for entry in entries:
            queue.finish(entry)
        assert len(queue) == 0

    async def test_entries_finished_behind_a_slow_one_are_compacted(self) -> None:
        """Entries finished out of order behind a running one do not pile up without bound."""
        task = asyncio.current_task()
        assert task is not None
        queue = DeadlineQueue(asyncio.get_running_loop(), BOUND)
        slow = queue.start(task)
        for _ in range(1000):
            queue.finish(queue.start(task))
        assert len(queue) < 200
        queue.finish(slow)
        assert len(queue) == 0

    async def test_one_timer_serves_many_deadlines(self) -> None:
        """However many deadlines are open, the queue keeps a single timer armed."""
        task = asyncio.current_task()
        assert task is not None
        queue = DeadlineQueue(asyncio.get_running_loop(), BOUND)
        entries = [queue.start(task) for _ in range(100)]
        timer = queue.timer
        assert timer is not None
        assert all(queue.timer is timer for _ in entries)
        for entry in entries:
            queue.finish(entry)
