"""`DeadLetterHook`: told when a message is given up on, in the transaction that gives it up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from cqrskit._loggable import loggable_exception

if TYPE_CHECKING:
    from cqrskit.events._envelope import Envelope
    from cqrskit.sqlalchemy._database import Database

__all__ = ["DeadLetterHook", "report_dead_letter"]


class DeadLetterHook(Protocol):
    """Something that must learn of a message given up on: a `ProcessManager` is one.

    Give hooks to a `Consumer` or a `ScheduleRunner` with ``dead_letter_hooks=[...]``. When a message
    fails for good, each hook's `dead_lettered` runs in a savepoint of the transaction that records
    the failure (the consumer's batch, which commits before the broker is told to dead-letter the
    message; the runner's claim, which marks the row dead), so what the hook writes commits with it.
    A hook that raises is logged and rolled back alone: the message is dead-lettered all the same.
    Where no transaction records the failure (an unreadable delivery, a batch whose transaction
    failed), the hook runs in a transaction of its own just before the message is dead-lettered.
    """

    async def dead_lettered(self, envelope: Envelope, reason: str) -> None:
        """React to `envelope` (every header kept, its ordering key included) failing for good."""
        ...


async def report_dead_letter(
    hooks: Sequence[DeadLetterHook], database: Database, envelope: Envelope, reason: str, logger: Any
) -> None:
    """Run every hook in a savepoint (or a transaction) of its own; log, and swallow, what one raises."""
    for hook in hooks:
        try:
            async with database.transaction():
                await hook.dead_lettered(envelope, reason)
        except Exception as exc:  # noqa: BLE001 - logged, see loggable_exception
            logger.error(  # noqa: TRY400 - loggable_exception
                "dead_letter_hook_failed",
                hook=repr(hook),
                message_id=envelope.message_id,
                message_name=envelope.name,
                **loggable_exception(exc),
            )
