"""`Observer`: what the relay and the consumer report as messages flow, for metrics or anything else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cqrskit.events._envelope import Envelope

__all__ = ["NO_OBSERVER", "Observer"]


class Observer(Protocol):
    """Told by `OutboxRelay` and `Consumer` what happened; `EventMetrics` is one (Prometheus).

    Each method is called in the relay's or the consumer's task, so it must be quick and must not
    raise; give one with ``observer=`` to the relay and the consumer.
    """

    def published(self, envelopes: Sequence[Envelope]) -> None:
        """Record that the broker confirmed `envelopes` (their rows are about to be marked published)."""
        ...

    def publish_failed(self) -> None:
        """Record a failed relay pass (broker or database error), retried after a back-off."""
        ...

    def backlog(self, pending: int, oldest_age: float | None) -> None:
        """Record the backlog: `pending` unsent rows, the oldest recorded `oldest_age` seconds ago."""
        ...

    def processed(self, envelope: Envelope, queue: str) -> None:
        """Record that every subscriber of `envelope` committed and it was acknowledged."""
        ...

    def retried(self, envelope: Envelope, queue: str) -> None:
        """Record that a subscriber of `envelope` failed and will be tried again."""
        ...

    def dead_lettered(self, envelope: Envelope, queue: str) -> None:
        """Record that `envelope` went to `queue`'s dead letters."""
        ...

    def duplicate(self, queue: str, subscriber: str) -> None:
        """Record a redelivery `subscriber`'s inbox row skipped (it was handled before)."""
        ...


class _Silent:
    """The observer used when none is given: it does nothing."""

    def published(self, envelopes: Sequence[Envelope]) -> None:
        pass

    def publish_failed(self) -> None:
        pass

    def backlog(self, pending: int, oldest_age: float | None) -> None:
        pass

    def processed(self, envelope: Envelope, queue: str) -> None:
        pass

    def retried(self, envelope: Envelope, queue: str) -> None:
        pass

    def dead_lettered(self, envelope: Envelope, queue: str) -> None:
        pass

    def duplicate(self, queue: str, subscriber: str) -> None:
        pass


NO_OBSERVER: Observer = _Silent()
"""The observer that does nothing."""
