"""`CacheInvalidation`: dropping cached query results a command made stale, once it has committed."""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Mapping
from typing import Any

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._errors import ConfigurationError
from cqrskit._logs import library_logger
from cqrskit._messages import Command
from cqrskit._pipeline import require_kind
from cqrskit._results import Result
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
from cqrskit.caching._aiocache import as_backend
from cqrskit.caching._failures import FailureLog
from cqrskit.caching._keys import entity_tag_keys
from cqrskit.caching._query_cache import DEFAULT_TAG_TTL
from cqrskit.scope import defer_until_commit

__all__ = ["CacheInvalidation"]

_SUCCESS = OperationStatus.SUCCESS
# An invalidation adds a random positive amount: a counter that was evicted and recreated by the
# increment itself still lands on a value no entry recorded.
_DELTA_BITS = 32


class CacheInvalidation:
    """Drops the cached query results a successful command made stale: command buses only.

    For each of the command's `affected_entities` ``(kind, id)`` it bumps the version of the tags
    ``(kind, id)`` and ``(kind, "*")`` in `cache` (the one `QueryCache` uses), so every entry tagged
    with them, in this process and in every process sharing the cache, reads as a miss. Nothing is
    scanned or deleted. An entity id ``"*"`` stands for every entity of the kind.

    It runs after the command's transaction commits (through `cqrskit.scope.defer_until_commit`;
    at once when no transaction is open) and never for a failed or rolled-back command. A cache
    failure is logged (at most one line per `warn_interval` seconds) and never fails the command.
    Its place is `Stage.CACHE`, outside Retry and Transaction.
    """

    stage = Stage.CACHE

    def __init__(
        self,
        cache: object,
        *,
        tag_ttl: float = DEFAULT_TAG_TTL,
        logger: Any = None,
        warn_interval: float = 10.0,
    ) -> None:
        if tag_ttl <= 0:
            raise ConfigurationError(f"tag_ttl must be positive seconds, got {tag_ttl!r}")
        self._backend = as_backend(cache)
        self._tag_ttl = tag_ttl
        self._logger = logger if logger is not None else library_logger("cqrskit.cache")
        self._failures = FailureLog(
            self._logger, "cache_invalidation_failed", level="error", interval=warn_interval
        )

    @property
    def backend(self) -> object:
        """The `CacheBackend` whose tags this behaviour bumps."""
        return self._backend

    def bind(self, message_type: type) -> CacheInvalidation:
        """Stay in every command's pipeline; on any bus but a command bus, raise `ConfigurationError`."""
        require_kind(self, message_type, Command)
        return self

    def describe(self, message_type: type) -> Mapping[str, object]:  # noqa: ARG002 - same for every type
        """Return what this behaviour does for `message_type`, for the route inspector."""
        return {"invalidates": "query results tagged with the affected entities, after commit"}

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the rest of the pipeline; on success, invalidate its affected entities after commit."""
        result = await call_next(message, context)
        if result.status is not _SUCCESS or not result.affected_entities:
            return result
        keys: dict[str, None] = {}
        for entity in result.affected_entities:
            for key in entity_tag_keys(entity.kind, str(entity.id)):
                keys[key] = None
        work = functools.partial(self._invalidate, tuple(keys))
        if not defer_until_commit(work):
            # Shielded: a caller cancelled now must not leave committed changes behind stale entries.
            await asyncio.shield(work())
        return result

    async def _invalidate(self, tag_keys: tuple[str, ...]) -> None:
        for tag_key in tag_keys:
            try:
                await self._backend.increment(tag_key, secrets.randbits(_DELTA_BITS) + 1, self._tag_ttl)
            except Exception as exc:  # noqa: BLE001 - the command has committed; its outcome stands
                self._failures.record("increment", exc, tag_key=tag_key)

    def __repr__(self) -> str:
        return f"CacheInvalidation({self._backend!r})"
