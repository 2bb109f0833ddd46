"""`CacheInvalidation`: dropping cached query results a command made stale, once it has committed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import Mapping, Sequence
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
from cqrskit.caching._journal import InvalidationJournal
from cqrskit.caching._keys import entity_tag_keys, tenant_scope
from cqrskit.caching._query_cache import DEFAULT_TAG_TTL
from cqrskit.scope import current_transaction, defer_until_commit

__all__ = ["CacheInvalidation"]

_SUCCESS = OperationStatus.SUCCESS
# An invalidation adds a random positive amount: a counter that was evicted and recreated by the
# increment itself still lands on a value no entry recorded.
_DELTA_BITS = 32
# Records applied per pass of `run`; a full batch starts the next pass at once.
_BATCH = 100


class CacheInvalidation:
    """Drops the cached query results a successful command made stale: command buses only.

    For each of the command's `affected_entities` ``(kind, id)`` it bumps the version of the tags
    ``(kind, id)`` and ``(kind, "*")`` in `cache` (the one `QueryCache` uses), so every entry tagged
    with them, in this process and in every process sharing the cache, reads as a miss. Nothing is
    scanned or deleted. An entity id ``"*"`` stands for every entity of the kind. A command whose
    context has a tenant bumps that tenant's tags only: another tenant's entries stay.

    It runs after the command's transaction commits (through `cqrskit.scope.defer_until_commit`;
    at once when no transaction is open) and never for a failed or rolled-back command.

    Without a `journal` a cache failure is logged (at most one line per `warn_interval` seconds) and
    the invalidation is dropped: the entries live until their ttl. Its place is then `Stage.CACHE`,
    outside Retry and Transaction.

    With a `journal` (`cqrskit.sqlalchemy.SqlInvalidationJournal`) no invalidation is dropped: the
    tags to bump are recorded in the command's transaction, bumped right after COMMIT (the record
    is then deleted), and, when the cache cannot be reached, left for `run` (a task of the
    application, in every process) to apply as soon as it can. Its place is then
    `Stage.PUBLISHING`, inside Transaction, where the command's transaction is still open. A
    command run with no transaction open is bumped at once and recorded only if that fails.
    """

    stage = Stage.CACHE

    def __init__(
        self,
        cache: object,
        *,
        journal: InvalidationJournal | None = None,
        retry_interval: float = 1.0,
        tag_ttl: float = DEFAULT_TAG_TTL,
        logger: Any = None,
        warn_interval: float = 10.0,
    ) -> None:
        if tag_ttl <= 0:
            raise ConfigurationError(f"tag_ttl must be positive seconds, got {tag_ttl!r}")
        if retry_interval <= 0:
            raise ConfigurationError(f"retry_interval must be positive seconds, got {retry_interval!r}")
        self._backend = as_backend(cache)
        self._journal = journal
        self._retry_interval = retry_interval
        self._tag_ttl = tag_ttl
        self._logger = logger if logger is not None else library_logger("cqrskit.cache")
        self._failures = FailureLog(
            self._logger, "cache_invalidation_failed", level="error", interval=warn_interval
        )
        self._journal_failures = FailureLog(
            self._logger, "cache_invalidation_journal_failed", level="error", interval=warn_interval
        )
        self._stopping = asyncio.Event()
        if journal is not None:
            self.stage = Stage.PUBLISHING

    @property
    def backend(self) -> object:
        """The `CacheBackend` whose tags this behaviour bumps."""
        return self._backend

    @property
    def journal(self) -> InvalidationJournal | None:
        """Where invalidations are recorded until applied (None: they are dropped on a cache failure)."""
        return self._journal

    def bind(self, message_type: type) -> CacheInvalidation:
        """Stay in every command's pipeline; on any bus but a command bus, raise `ConfigurationError`."""
        require_kind(self, message_type, Command)
        return self

    def describe(self, message_type: type) -> Mapping[str, object]:  # noqa: ARG002 - same for every type
        """Return what this behaviour does for `message_type`, for the route inspector."""
        described: dict[str, object] = {
            "invalidates": "query results tagged with the affected entities, after commit"
        }
        if self._journal is not None:
            described["journal"] = repr(self._journal)
        return described

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Run the rest of the pipeline; on success, invalidate its affected entities after commit."""
        result = await call_next(message, context)
        if result.status is not _SUCCESS or not result.affected_entities:
            return result
        tenant = context.tenant
        scope = "" if tenant is None else tenant_scope(tenant)
        keys: dict[str, None] = {}
        for entity in result.affected_entities:
            for key in entity_tag_keys(entity.kind, str(entity.id), scope):
                keys[key] = None
        tag_keys = tuple(keys)
        if self._journal is not None and current_transaction() is not None:
            # Recorded in the command's transaction: the record exists exactly when the command committed.
            record_id = await self._journal.record(tag_keys)
            defer_until_commit(functools.partial(self._apply_recorded, tag_keys, record_id))
            return result
        work = functools.partial(self._invalidate_now, tag_keys)
        if not defer_until_commit(work):
            # Shielded: a caller cancelled now must not leave committed changes behind stale entries.
            await asyncio.shield(work())
        return result

    async def _bump(self, tag_keys: Sequence[str]) -> bool:
        """Bump `tag_keys`; return False at the first failure (logged), True when all were bumped."""
        for tag_key in tag_keys:
            try:
                await self._backend.increment(tag_key, secrets.randbits(_DELTA_BITS) + 1, self._tag_ttl)
            except Exception as exc:  # noqa: BLE001 - the command has committed; its outcome stands
                self._failures.record("increment", exc, tag_key=tag_key)
                return False
        return True

    async def _invalidate_now(self, tag_keys: tuple[str, ...]) -> None:
        """No transaction of ours to record in: bump now; with a journal, record what failed."""
        if self._journal is None:
            for tag_key in tag_keys:  # best effort: each key gets its chance
                await self._bump((tag_key,))
            return
        if not await self._bump(tag_keys):
            try:
                await self._journal.record(tag_keys)
            except Exception as exc:  # noqa: BLE001 - the command has committed; its outcome stands
                self._journal_failures.record("record", exc)

    async def _apply_recorded(self, tag_keys: tuple[str, ...], record_id: str) -> None:
        """Bump at once after COMMIT and forget the record (the fast path); on failure `run` retries."""
        if not await self._bump(tag_keys):
            return
        journal = self._journal
        assert journal is not None  # noqa: S101 - only scheduled with a journal
        try:
            await journal.applied((record_id,))
        except Exception as exc:  # noqa: BLE001 - applying it again later is harmless
            self._journal_failures.record("applied", exc)

    async def apply_pending(self, limit: int = _BATCH) -> int:
        """Apply up to `limit` recorded invalidations (any process's); return how many were applied.

        Stops at the first cache failure: the rest wait for the next call. Bumping a tag twice is
        harmless, so a record applied here and by its own process's fast path at once costs only a miss.
        """
        journal = self._journal
        if journal is None:
            return 0
        done: list[str] = []
        try:
            for record_id, tag_keys in await journal.pending(limit):
                if not await self._bump(tag_keys):
                    break
                done.append(record_id)
        finally:
            if done:
                await journal.applied(done)
        return len(done)

    async def run(self) -> None:
        """Apply recorded invalidations every `retry_interval` seconds until `stop` (a task of the app).

        Run it in every process that shares the database: whichever runs first applies what another
        process could not (the cache was down, or that process died). Once the cache can be reached
        again, every recorded invalidation is applied within `retry_interval` seconds plus one
        cache call's timeout.
        """
        self._stopping.clear()
        while not self._stopping.is_set():
            try:
                applied = await self.apply_pending()
            except Exception as exc:  # noqa: BLE001 - the database is down: try again next time
                self._journal_failures.record("pending", exc)
                applied = 0
            if applied == _BATCH:  # a full batch: more may be waiting
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._retry_interval)

    def stop(self) -> None:
        """Ask `run` to return after the pass in hand."""
        self._stopping.set()

    def __repr__(self) -> str:
        return f"CacheInvalidation({self._backend!r})"
