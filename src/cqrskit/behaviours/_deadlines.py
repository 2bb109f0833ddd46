"""Deadlines that cancel a task, cheaper than one `asyncio.timeout` per dispatch.

`asyncio.timeout` schedules (and, on exit, cancels) one loop timer per use: a `TimerHandle`, a heap
push and, later, heap clean-up. Here every deadline of one duration on one loop goes into one FIFO
queue instead. Deadlines of one duration expire in the order they were set, so the queue stays sorted
by itself, and a single loop timer, armed for the oldest deadline, serves them all. A dispatch that
finishes only marks its entry; finished entries at the front are dropped at once, and the queue is
compacted when finished entries pile up behind a slow one.

The cancellation protocol is `asyncio.timeout`'s: the timer calls ``task.cancel()``; the dispatch that
owns the deadline sees `CancelledError`, calls ``task.uncancel()``, and reports a timeout only when no
other cancellation is pending, so a cancellation from outside still propagates.

Finding the running loop costs a ``getpid()`` system call in CPython's `asyncio.get_running_loop`, so a
queue remembers its loop and the thread that runs it: in that thread, ``asyncio.current_task(loop)`` is
the caller's task, found without the system call.
"""

from __future__ import annotations

import asyncio
import time
from _thread import get_ident
from collections import deque
from typing import Any

from cqrskit.scope import DEADLINE_EXPIRED

__all__ = ["DeadlineQueue", "Entry"]

_RESOLUTION = time.get_clock_info("monotonic").resolution
_COMPACT_AT = 64  # finished entries tolerated behind a slow one before the queue is rebuilt

Entry = list[Any]
"""One deadline, a list for speed: ``[task or None once finished, when, task.cancelling() at start,
expired]``."""


class DeadlineQueue:
    """The deadlines of one duration on one event loop, served by one loop timer.

    Use it only from the thread running its loop (`thread`); `Timeout` checks that before it finds the
    calling task with ``asyncio.current_task(queue.loop)``.
    """

    __slots__ = ("_finished", "entries", "loop", "seconds", "thread", "time", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self.thread = get_ident()
        self.seconds = seconds
        self.entries: deque[Entry] = deque()
        self._finished = 0
        self.timer: asyncio.TimerHandle | None = None
        self.time = loop.time

    def start(self, task: asyncio.Task[Any]) -> Entry:
        """Set a deadline `seconds` from now that cancels `task`; give the entry back to `stop`."""
        entry: Entry = [task, self.time() + self.seconds, task.cancelling(), False]
        self.entries.append(entry)
        if self.timer is None:
            self.arm(entry[1])
        return entry

    def arm(self, when: float) -> None:
        """Arm the queue's timer for `when`."""
        self.timer = self.loop.call_at(when, self._expire)

    def stop(self, entry: Entry) -> bool:
        """End `entry`'s deadline; return True when it expired and no other cancellation is pending.

        When it expired, the cancellation it caused is taken back (``task.uncancel()``), so a handler
        that swallowed it and finished keeps its result.
        """
        task = entry[0]
        self.finish(entry)
        return bool(entry[3]) and task.uncancel() <= entry[2]

    def finish(self, entry: Entry) -> None:
        """Forget `entry`: its dispatch is over."""
        entry[0] = None
        entries = self.entries
        if entries and entries[0] is entry:
            entries.popleft()
            if entries and entries[0][0] is None:
                self.drop_finished()
        else:
            self.finished_behind(entry)

    def drop_finished(self) -> None:
        """Drop the finished entries at the front of the queue."""
        entries = self.entries
        while entries and entries[0][0] is None:
            entries.popleft()
            self._finished -= 1

    def finished_behind(self, entry: Entry) -> None:
        """Count `entry`, finished behind an older one still running; compact when too many pile up."""
        if entry[3]:
            return  # an expired entry has already left the queue
        self._finished += 1
        if self._finished > _COMPACT_AT and self._finished * 2 > len(self.entries):
            self.entries = deque(e for e in self.entries if e[0] is not None)
            self._finished = 0

    def _expire(self) -> None:
        """Cancel the tasks whose deadline has come, then arm the timer for the next one."""
        self.timer = None
        entries = self.entries
        limit = self.time() + _RESOLUTION
        while entries:
            head = entries[0]
            task = head[0]
            if task is None:
                entries.popleft()
                self._finished -= 1
                continue
            if head[1] > limit:
                self.arm(head[1])
                return
            entries.popleft()
            head[3] = True
            task.cancel(DEADLINE_EXPIRED)

    def __len__(self) -> int:
        return len(self.entries)
