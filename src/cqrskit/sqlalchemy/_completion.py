"""Finishing a transaction even when the task that opened it is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["to_completion"]

T = TypeVar("T")


async def to_completion(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end even if the caller is cancelled meanwhile; then let the cancellation through.

    A COMMIT that was sent must be allowed to finish (or fail) so the command has the commit's
    outcome and the connection goes back to the pool in a known state. Cancellation is never
    swallowed: once `work` is done, a pending cancellation is raised again, chained to `work`'s error
    if it failed.
    """
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            value = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise  # the work itself was cancelled: the event loop is shutting down
            cancelled = True
            if not task.done():
                continue
            error = task.exception()
            raise asyncio.CancelledError from error
        except BaseException as error:
            if cancelled:
                raise asyncio.CancelledError from error
            raise
        if cancelled:
            raise asyncio.CancelledError
        return value
