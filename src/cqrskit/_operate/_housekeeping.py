"""What a running process does besides its work: sampling the outbox backlog and purging old rows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from cqrskit._loggable import loggable_exception
from cqrskit._operate._options import Cleanup
from cqrskit.events._consumer import Consumer
from cqrskit.events._idempotency import Idempotency
from cqrskit.events._relay import OutboxRelay


async def sample_backlog(relays: Sequence[OutboxRelay], interval: float, log: Any) -> None:
    """Every `interval` seconds, measure each relay's outbox backlog and hand it to its observer."""
    while True:
        for relay in relays:
            try:
                backlog = await relay.backlog()
            except Exception as exc:  # noqa: BLE001 - logged; the process goes on
                log.warning("outbox_backlog_unmeasured", **loggable_exception(exc))
            else:
                relay.observer.backlog(backlog.pending, backlog.oldest_age)
        await asyncio.sleep(interval)


async def clean_up(
    consumers: Sequence[Consumer],
    relays: Sequence[OutboxRelay],
    idempotency: Idempotency | None,
    cleanup: Cleanup,
    log: Any,
) -> None:
    """Purge on a schedule, in small transactions; a failure is logged and tried at the next round."""
    while True:
        started = time.monotonic()
        jobs: list[tuple[str, Awaitable[int]]] = []
        batch = cleanup.batch_size
        if relays:  # every relay of a schema shares its outbox: the first one purges it
            jobs.append(("outbox", relays[0].purge(cleanup.outbox, batch_size=batch)))
        if consumers:  # the inbox is shared by the schema's consumers
            jobs.append(("inbox", consumers[0].purge_inbox(cleanup.inbox, batch_size=batch)))
        if idempotency is not None:
            jobs.append(("idempotency_keys", idempotency.purge_expired(batch_size=batch)))
        for what, job in jobs:
            try:
                removed = await job
            except Exception as exc:  # noqa: BLE001 - logged; the process goes on
                log.warning("cleanup_failed", table=what, **loggable_exception(exc))
            else:
                log.info("cleanup_done", table=what, removed=removed)
        await asyncio.sleep(max(0.0, cleanup.interval - (time.monotonic() - started)))
