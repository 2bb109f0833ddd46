"""Finishing a transaction even when the task that opened it is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from cqrskit.scope import is_deadline

__all__ = ["commit_to_completion", "to_completion"]

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


async def commit_to_completion(work: Coroutine[Any, Any, None]) -> asyncio.CancelledError | None:
    """Run a COMMIT to its end even if the caller is cancelled meanwhile; return that cancellation.

    The commit's outcome decides the command's: when it fails its error is raised (as the cause of
    the cancellation, if a cancellation other than a `Timeout` deadline arrived meanwhile); when it
    succeeds the cancellation, if any, is returned for the caller to handle once the committed
    command's after-commit work is done.
    """
    task = asyncio.ensure_future(work)
    interrupted: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as cancellation:
            if task.cancelled():
                raise  # the commit itself was cancelled: the event loop is shutting down
            if interrupted is None or is_deadline(interrupted):
                interrupted = cancellation
            if not task.done():
                continue
            error = task.exception()
            if error is None:
                return interrupted
            if is_deadline(interrupted):
                raise error from None
            raise asyncio.CancelledError from error
        except BaseException as error:
            if interrupted is not None and not is_deadline(interrupted):
                raise asyncio.CancelledError from error
            raise
        return interrupted
