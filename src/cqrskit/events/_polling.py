"""`PollingLoop`: the loop of a component that works in passes, at once when woken, else every interval.

The outbox relay and the due-command loops (`ScheduleRunner`, `ScheduleForwarder`) share it: a pass,
then, when it found nothing to do, a wait of `poll_interval` that `wake` cuts short; a failed pass is
reported and followed by a wait of `error_backoff`; `stop` ends the loop after the pass in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

__all__ = ["PollingLoop"]


class PollingLoop:
    """Runs passes until stopped; a pass returns how much it did (0: wait before the next one)."""

    __slots__ = ("_error_backoff", "_poll_interval", "_started", "_stopping", "_wake")

    def __init__(self, poll_interval: float, error_backoff: float) -> None:
        self._poll_interval = poll_interval
        self._error_backoff = error_backoff
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._started = asyncio.Event()

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called: a long pass checks it to end early."""
        return self._stopping.is_set()

    async def started(self) -> None:
        """Wait until `run` has started (and is about to make its first pass)."""
        await self._started.wait()

    def stop(self) -> None:
        """Ask `run` to return after the pass in hand."""
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Start the next pass now instead of after the poll interval."""
        self._wake.set()

    async def run(
        self,
        one_pass: Callable[[], Awaitable[int]],
        failed: Callable[[Exception], None],
        around: contextlib.AbstractAsyncContextManager[None] | None = None,
    ) -> None:
        """Call `one_pass` until `stop`; `failed` is told of a pass that raised, and the loop goes on.

        `around`, when given, is entered before the first pass and left after the last (the relay's
        LISTEN); `started` waits for it, and a `stop` while it is entered is kept.
        """
        self._stopping.clear()
        async with around if around is not None else contextlib.nullcontext():
            await self._passes(one_pass, failed)

    async def _passes(
        self, one_pass: Callable[[], Awaitable[int]], failed: Callable[[Exception], None]
    ) -> None:
        self._started.set()
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # a wake from now on starts another pass
                try:
                    done = await one_pass()
                except Exception as exc:  # noqa: BLE001 - reported to `failed`, then retried
                    failed(exc)
                    await self._sleep(self._error_backoff)
                    continue
                if done == 0:
                    await self._sleep(self._poll_interval)
        finally:
            self._started.clear()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
