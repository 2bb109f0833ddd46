"""The open transaction, as behaviours that are not about databases see it.

`Transaction` opens a `TransactionScope` for each command; behaviours that must act only once the
command's effects are durable (cache invalidation, in-process events) hand their work to
`defer_until_commit`, and a nested command's `Retry` sees through `current_transaction` that it joined
an outer transaction and must not retry on its own. This module knows nothing of SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from cqrskit._loggable import loggable_exception
from cqrskit._logs import library_logger
from cqrskit._names import short_name

__all__ = [
    "DEADLINE_EXPIRED",
    "AfterCommit",
    "TransactionScope",
    "current_transaction",
    "defer_until_commit",
    "is_deadline",
]

DEADLINE_EXPIRED = "cqrskit: the dispatch's deadline expired"
"""The message `Timeout` cancels a task with, so a COMMIT in flight can tell a deadline from a shutdown.

Once COMMIT was sent a command's outcome is the commit's: `Transaction` lets the commit finish and,
when the only cancellation was a deadline, reports the commit's outcome instead of the timeout.
"""

AfterCommit = Callable[[], Awaitable[None]]
"""Work to run once the outermost transaction has committed: a zero-argument coroutine function."""

_current: ContextVar[TransactionScope | None] = ContextVar("cqrskit_transaction", default=None)


class TransactionScope:
    """One open transaction (or savepoint) and the work waiting for the outermost commit.

    A nested scope (a savepoint) hands its waiting work to its parent when it is released, and drops
    it when it is rolled back; only the outermost scope runs it, after COMMIT.
    """

    __slots__ = ("_waiting", "parent")

    def __init__(self, parent: TransactionScope | None = None) -> None:
        self.parent = parent
        self._waiting: list[AfterCommit] = []

    @property
    def pending(self) -> int:
        """How many pieces of work wait in this scope for the commit (not counting a parent's)."""
        return len(self._waiting)

    @property
    def is_outermost(self) -> bool:
        """True when this scope is the real transaction, not a savepoint inside one."""
        return self.parent is None

    def after_commit(self, work: AfterCommit) -> None:
        """Queue `work` to run after the outermost transaction commits."""
        self._waiting.append(work)

    def release(self) -> None:
        """Pass the waiting work up to the enclosing scope: the savepoint succeeded."""
        if self.parent is not None:
            self.parent._waiting.extend(self._waiting)
        self._waiting.clear()

    def discard(self) -> None:
        """Forget the waiting work: the transaction or savepoint rolled back."""
        self._waiting.clear()

    async def run_after_commit(self, logger: Any = None) -> None:
        """Run the waiting work in order; a failure is logged and never stops the rest."""
        waiting, self._waiting = self._waiting, []
        for work in waiting:
            try:
                await work()
            except Exception as exc:  # noqa: BLE001 - the command has committed; its outcome stands
                (logger or library_logger("cqrskit")).error(
                    "after_commit_failed", work=short_name(work), **loggable_exception(exc)
                )

    @contextmanager
    def entered(self) -> Iterator[TransactionScope]:
        """Make this scope the current one for the length of the ``with`` block."""
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)


def is_deadline(cancellation: BaseException) -> bool:
    """Return True when `cancellation` is the `CancelledError` of an expired `Timeout` deadline."""
    return cancellation.args[:1] == (DEADLINE_EXPIRED,)


def current_transaction() -> TransactionScope | None:
    """Return the innermost open transaction scope of this task, or None."""
    return _current.get()


def defer_until_commit(work: AfterCommit) -> bool:
    """Queue `work` for after the open transaction commits; return False when none is open.

    A caller that gets False runs the work itself, at once::

        if not defer_until_commit(invalidate):
            await invalidate()
    """
    scope = _current.get()
    if scope is None:
        return False
    scope.after_commit(work)
    return True
