"""How a process command runs: `ProcessOptions` and its `Cleanup` schedule."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs

_DAY = 24 * 3600.0


@attrs.frozen
class Cleanup:
    """What the process purges, how old it must be (seconds), how often and in what batches.

    `interval` 0 turns cleanup off. The relay purges outbox rows published more than `outbox`
    seconds ago; the consumer, inbox rows older than `inbox`; either, with an `Idempotency` named,
    the expired idempotency keys.
    """

    interval: float = 3600.0
    outbox: float = 7 * _DAY
    inbox: float = 7 * _DAY
    batch_size: int = 1000


@attrs.frozen
class ProcessOptions:
    """How `serve` runs: the provider names to take, the consumers' overrides, probes and cleanup."""

    relays: Sequence[str] = ()
    consumers: Sequence[str] = ()
    idempotency: str | None = None
    queue: str | None = None
    concurrency: int | None = None
    prefetch: int | None = None
    create_tables: bool = False
    grace: float = 30.0
    ready_file: Path | None = None
    health_host: str = "127.0.0.1"
    health_port: int | None = None
    max_lag: float | None = None
    metrics: bool = False
    backlog_interval: float = 5.0
    cleanup: Cleanup = Cleanup()
