"""Dead letters you can read, replay and purge: `DeadLetter` and the `DeadLetters` protocol."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

import attrs

from cqrskit.events._envelope import Envelope

__all__ = ["DeadLetter", "DeadLetters", "Selector", "chosen"]


@attrs.frozen
class DeadLetter:
    """A message a consumer gave up on, as its queue's dead letters keep it.

    `envelope` is the message as it was published, every header kept (ordering key, correlation and
    causation ids, principal, trace context); `reason` says why it was dead-lettered when the
    transport knows (``"rejected"``, ``"delivered 20 times"``), and `dead_lettered_at` when (UNIX time).
    """

    envelope: Envelope
    queue: str
    reason: str | None = None
    dead_lettered_at: float | None = None

    @property
    def message_id(self) -> str:
        """The message's id (the inbox's key: a replayed message is deduplicated per subscriber)."""
        return self.envelope.message_id


Selector = Callable[[DeadLetter], bool]
"""A filter over dead letters: True for those to replay or purge."""


class DeadLetters(Protocol):
    """Read, replay and purge a queue's dead letters; `RabbitMQTransport` and `NatsTransport` do it.

    With neither `message_ids` nor `where`, `replay` and `purge` take every dead letter of the queue;
    with one or both, those that match all that is given. A replayed message goes back to the queue it
    was dead-lettered from with its id and every header, so the consumer's inbox still runs each
    subscriber once: fix the subscriber, then replay.
    """

    async def dead_letters(self, queue: str, *, limit: int | None = None) -> Sequence[DeadLetter]:
        """Return `queue`'s dead letters, oldest first (at most `limit`); they stay where they are."""
        ...

    async def replay(
        self, queue: str, *, message_ids: Collection[str] | None = None, where: Selector | None = None
    ) -> int:
        """Send the chosen dead letters back to `queue` and remove them from the dead letters; count them."""
        ...

    async def purge(
        self, queue: str, *, message_ids: Collection[str] | None = None, where: Selector | None = None
    ) -> int:
        """Remove the chosen dead letters for good; return how many."""
        ...


def chosen(dead: DeadLetter, message_ids: Collection[str] | None, where: Selector | None) -> bool:
    """Return True when `dead` is one of `message_ids` (if given) and `where` accepts it (if given)."""
    if message_ids is not None and dead.message_id not in message_ids:
        return False
    return where is None or where(dead)
