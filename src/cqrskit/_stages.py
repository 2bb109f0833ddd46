"""The canonical order of the behaviours, declared once: `Stage`."""

from __future__ import annotations

import enum

__all__ = ["Stage"]


class Stage(enum.IntEnum):
    """Where a behaviour sits in a pipeline, outermost first; the bus checks the order when it is built.

    A behaviour declares its place with a class attribute, ``stage = Stage.RETRY``; the behaviours of a
    bus must be listed with their stages in this order (equal stages may sit in any order). A behaviour
    that declares no stage (yours, or a plain async function) may sit anywhere.
    """

    TRACING = 10
    """`Tracing`: the span covers everything, the log event included."""
    LOGGING = 20
    """`Logging`: its event covers everything the behaviours inside it decide."""
    METRICS = 30
    """`Metrics`: the duration covers retries, the status is the caller's."""
    AUDIT = 40
    """`Audit`: records the outcome the caller sees."""
    TIMEOUT = 50
    """`Timeout`: the deadline covers authorization, retries and the transaction."""
    AUTHORIZATION = 60
    """`Authorization`: a refused caller costs no validation, no cache and no database."""
    VALIDATION = 70
    """`Validation`: an invalid message never reaches the cache or the database."""
    CACHE = 80
    """`QueryCache` (queries) or `CacheInvalidation` (commands): outside Retry, so a hit costs nothing
    and an invalidation follows the commit of the attempt that succeeded."""
    RETRY = 90
    """`Retry`: outside Transaction, since a serialization failure surfaces at COMMIT and the whole
    transaction must run again."""
    TRANSACTION = 100
    """`Transaction`: one transaction per attempt."""
    PUBLISHING = 110
    """`InProcessPublisher`, `OutboxPublisher`, and `CacheInvalidation` with a journal: inside
    Transaction, so what they record commits with the command and their work follows its commit."""
    IDEMPOTENCY = 120
    """`Idempotency`: inside Transaction, so its key row commits with the command's effects."""
