"""`QueryCache`: answering repeated queries from a cache, one `CachePolicy` per query type."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping
from typing import Any

import cattrs

from cqrskit._context import Context
from cqrskit._contracts import CallNext
from cqrskit._errors import ConfigurationError
from cqrskit._logs import library_logger
from cqrskit._messages import Query, StreamQuery
from cqrskit._names import short_name
from cqrskit._pipeline import require_kind
from cqrskit._results import CacheInfo, Result
from cqrskit._stages import Stage
from cqrskit._status import OperationStatus
from cqrskit.caching._aiocache import as_backend
from cqrskit.caching._failures import FailureLog
from cqrskit.caching._flight import LoadLock, SingleFlight
from cqrskit.caching._keys import CachePlan, dependency_tag_keys, make_cache_converter, tenant_scope
from cqrskit.caching._policy import CachePolicy

__all__ = ["DEFAULT_TAG_TTL", "QueryCache"]

_PLAIN_ENTRY = 2  # [value, versions]; an entry with tags from its result adds [keys, versions]

_SUCCESS = OperationStatus.SUCCESS
# Tag version counters start at a random value, so a counter that was evicted and created again
# never repeats a version an old entry recorded.
_START_BITS = 48
DEFAULT_TAG_TTL = 7 * 24 * 3600.0


class QueryCache:
    """Answers queries from a cache: query buses only, for the query types in `policies`.

    `cache` is an aiocache cache or a `CacheBackend` (see `cqrskit.caching`); `policies` maps query
    types to their `CachePolicy`, and types without one are left out of the pipeline. A hit returns
    the cached value, rebuilt as the query's result type by cattrs; a miss runs the rest of the
    pipeline and stores a successful result (None only with ``cache_null_results``). Either way
    ``Result.cache_info`` says so. A dispatch whose context has a tenant reads and stores entries of
    that tenant only, depending on that tenant's tags: no answer crosses tenants. Concurrent misses for
    one key in this process run the handler once;
    with `lock_ttl` (seconds) a lock in the shared cache extends that to every process, the others
    polling every `lock_poll` seconds for the loader's entry, for at most `lock_ttl`. When the cache
    fails, the handler answers and a warning is logged (at most one per operation every
    `warn_interval` seconds).

    Its place is `Stage.CACHE`: inside Authorization and Validation, outside Retry and Transaction::

        QueryCache(cache, {GetUser: CachePolicy(ttl=300, tags=lambda q: [("user", q.user_id)])})
    """

    stage = Stage.CACHE

    def __init__(
        self,
        cache: object,
        policies: Mapping[Any, CachePolicy[Any]],
        *,
        converter: cattrs.Converter | None = None,
        tag_ttl: float = DEFAULT_TAG_TTL,
        lock_ttl: float | None = None,
        lock_poll: float = 0.02,
        logger: Any = None,
        warn_interval: float = 10.0,
    ) -> None:
        if lock_ttl is not None and lock_ttl <= 0:
            raise ConfigurationError(f"lock_ttl must be positive seconds or None, got {lock_ttl!r}")
        if lock_poll <= 0:
            raise ConfigurationError(f"lock_poll must be positive seconds, got {lock_poll!r}")
        if tag_ttl <= 0:
            raise ConfigurationError(f"tag_ttl must be positive seconds, got {tag_ttl!r}")
        if not isinstance(policies, Mapping):
            raise ConfigurationError(
                f"policies must map query types to CachePolicy, got {type(policies).__name__}"
            )
        self._backend = as_backend(cache)
        self._converter = converter if converter is not None else make_cache_converter()
        plans: dict[type, CachePlan] = {}
        for query_type, policy in policies.items():
            if isinstance(query_type, type) and issubclass(query_type, StreamQuery):
                raise ConfigurationError(
                    f"QueryCache cannot cache {query_type.__qualname__}: it is a StreamQuery, whose "
                    "items flow to the caller as they are read and are never held whole; remove its "
                    "policy (cache the queries it is built from instead)"
                )
            if not (isinstance(query_type, type) and issubclass(query_type, Query)):
                raise ConfigurationError(
                    f"QueryCache policies are keyed by Query subclasses, not {query_type!r}"
                )
            if not isinstance(policy, CachePolicy):
                raise ConfigurationError(
                    f"the policy for {query_type.__qualname__} is {policy!r}, not a CachePolicy"
                )
            plans[query_type] = CachePlan(query_type, policy, self._converter)
        self._plans = plans
        self._tag_ttl = tag_ttl
        self._logger = logger if logger is not None else library_logger("cqrskit.cache")
        self._failures = FailureLog(self._logger, "cache_unavailable", interval=warn_interval)
        self._flights: SingleFlight[Result[Any]] = SingleFlight()
        self._lock = (
            None
            if lock_ttl is None
            else LoadLock(self._backend, ttl=lock_ttl, poll=lock_poll, failures=self._failures)
        )

    @property
    def configured_types(self) -> frozenset[type]:
        """The message types with a setting of their own here (the route inspector checks they are routed)."""
        return frozenset(self._plans)

    @property
    def backend(self) -> object:
        """The `CacheBackend` this behaviour reads and writes."""
        return self._backend

    def bind(self, message_type: type) -> QueryCache | None:
        """Stay in the pipeline of a query type with a policy; leave the others (None).

        On a bus that is not a query bus it raises `ConfigurationError`.
        """
        require_kind(self, message_type, Query)
        return self if message_type in self._plans else None

    def bind_stream(self, message_type: type) -> None:
        """Stay out of every streaming query's pipeline: a stream is never cached (see `__init__`)."""

    def describe(self, message_type: type) -> Mapping[str, object]:
        """Return the policy of `message_type`, for the route inspector."""
        policy = self._plans[message_type].policy
        return {
            "ttl": short_name(policy.ttl) if callable(policy.ttl) else policy.ttl,
            "vary_by": list(policy.vary_by) if policy.vary_by is not None else "all fields",
            "tags": short_name(policy.tags) if policy.tags is not None else None,
            "key": short_name(policy.key) if policy.key is not None else None,
            "version": policy.version,
            "cache_null_results": policy.cache_null_results,
        }

    def key_for(self, query: object, *, tenant: str | None = None) -> str:
        """Return the cache key `query` is stored under for `tenant` (without the backend's namespace)."""
        key = self._plans[type(query)].key(query)
        return key if tenant is None else tenant_scope(tenant) + key

    async def __call__(self, message: Any, context: Context, call_next: CallNext) -> Result[Any]:
        """Answer `message` from the cache, or run the rest of the pipeline and remember its answer."""
        plan = self._plans[type(message)]
        key = plan.key(message)
        tenant = context.tenant
        scope = ""
        if tenant is not None:  # a service without tenants pays this test only
            scope = tenant_scope(tenant)
            key = scope + key
        ttl = plan.ttl
        if plan.ttl_of is not None:
            ttl = float(plan.ttl_of(message))
            if ttl <= 0:
                return await call_next(message, context)
        tag_keys = dependency_tag_keys(plan.tags(message), scope) if plan.tags is not None else None
        try:
            entry, versions = await self._read(key, tag_keys)
        except Exception as exc:  # noqa: BLE001 - fail open: the handler answers
            self._failures.record("get", exc, key=key)
            result = await call_next(message, context)
            return (
                result.evolve(cache_info=CacheInfo(hit=False, key=key, ttl=ttl))
                if result.is_success
                else result
            )
        if entry is not None:
            hit = await self._hit(plan, entry, versions, key=key, ttl=ttl, context=context)
            if hit is not None:
                return hit
        # One loader per key in this process; the queries that miss meanwhile share its Result.
        load = functools.partial(
            self._lead, message, context, call_next, plan, key=key, ttl=ttl, tag_keys=tag_keys, scope=scope
        )
        result, led = await self._flights.run(key, load)
        if led:
            return result
        info = CacheInfo(hit=True, key=key, ttl=ttl) if result.is_success else None
        return result.evolve(cache_info=info, operation_id=context.operation_id)

    async def _hit(
        self, plan: CachePlan, entry: Any, versions: list[Any], *, key: str, ttl: float, context: Context
    ) -> Result[Any] | None:
        """Return the hit `entry` makes, reading the versions of the tags its result added, if any."""
        current = None
        if len(entry) > _PLAIN_ENTRY:  # tags derived from the result: one more round trip
            try:
                current = list(await self._backend.multi_get(list(entry[2]))) if entry[2] else []
            except Exception as exc:  # noqa: BLE001 - fail open: a miss
                self._failures.record("get", exc, key=key)
                return None
        return self._decode(plan, entry, versions, key=key, ttl=ttl, context=context, result_versions=current)

    def _decode(
        self,
        plan: CachePlan,
        entry: Any,
        versions: list[Any],
        *,
        key: str,
        ttl: float,
        context: Context,
        result_versions: list[Any] | None = None,
    ) -> Result[Any] | None:
        """Return the hit `entry` makes, or None when its tags are stale or it cannot be read.

        An entry with tags derived from its result is a hit only when `result_versions`, their
        current versions, match the ones stored with it.
        """
        try:
            if entry[1] != versions:
                return None
            if len(entry) > _PLAIN_ENTRY and (result_versions is None or list(entry[3]) != result_versions):
                return None
            data = entry[0]
            value = None if data is None else plan.structure(data, plan.result_type)
            pagination = value.pagination if plan.page and value is not None else None
        except Exception as exc:  # noqa: BLE001 - an unreadable entry is a miss
            self._failures.record("decode", exc, key=key)
            return None
        info = CacheInfo(hit=True, key=key, ttl=ttl)
        hit = Result.success(value, pagination=pagination, cache_info=info)
        return hit.evolve(operation_id=context.operation_id)

    async def _read(self, key: str, tag_keys: list[str] | None) -> tuple[Any, list[Any]]:
        """Return the entry under `key` and the current versions of `tag_keys`, in one round trip."""
        if tag_keys:
            found = await self._backend.multi_get([key, *tag_keys])
            return found[0], list(found[1:])
        return await self._backend.get(key), []

    async def _lead(
        self,
        message: Any,
        context: Context,
        call_next: CallNext,
        plan: CachePlan,
        *,
        key: str,
        ttl: float,
        tag_keys: list[str] | None,
        scope: str,
    ) -> Result[Any]:
        """Load as the one loader of `key`: look once more, then run the handler and store its value."""
        # Look again now that this task is the loader: a loader that finished while this task's
        # first lookup was in flight has stored the value by now.
        versions: list[Any] | None
        try:
            entry, versions = await self._read(key, tag_keys)
        except Exception as exc:  # noqa: BLE001 - fail open: the handler answers, nothing is stored
            self._failures.record("get", exc, key=key)
            versions = None
        else:
            if entry is not None:
                hit = await self._hit(plan, entry, versions, key=key, ttl=ttl, context=context)
                if hit is not None:
                    return hit
            # Tag versions are read before the handler runs, so an invalidation that lands while it
            # runs makes the entry stale at once.
            if tag_keys and None in versions:
                versions = await self._create_tags(tag_keys, versions)
        lock = self._lock
        lock_key = None
        if lock is not None and versions is not None:
            decode = functools.partial(self._decode, plan, key=key, ttl=ttl, context=context)
            lock_key, hit = await lock.take_or_wait(key, tag_keys, decode)
            if hit is not None:
                return hit
        try:
            result = await call_next(message, context)
            if not result.is_success:
                return result
            data = result.data
            if versions is not None and (data is not None or plan.null_ok):
                await self._store(
                    plan, message, data, key=key, ttl=ttl, versions=versions, tag_keys=tag_keys, scope=scope
                )
            return result.evolve(cache_info=CacheInfo(hit=False, key=key, ttl=ttl))
        finally:
            if lock is not None and lock_key is not None:
                await lock.release(lock_key)

    async def _store(
        self,
        plan: CachePlan,
        message: Any,
        data: Any,
        *,
        key: str,
        ttl: float,
        versions: list[Any],
        tag_keys: list[str] | None,
        scope: str,
    ) -> None:
        """Store `data` under `key` with the tag versions it depends on; fail open."""
        try:
            stored = None if data is None else plan.unstructure(data)
            entry: list[Any] = [stored, versions]
            if plan.result_tags is not None:
                extra = await self._result_tags(plan, message, data, tag_keys, scope)
                if extra is None:
                    return
                entry.extend(extra)
            await self._backend.set(key, entry, ttl)
        except Exception as exc:  # noqa: BLE001 - fail open: the answer stands
            self._failures.record("set", exc, key=key)

    async def _result_tags(
        self, plan: CachePlan, message: Any, data: Any, tag_keys: list[str] | None, scope: str
    ) -> tuple[list[str], list[Any]] | None:
        """Return the tag keys `data` adds to the query's, and their versions (None: store nothing).

        These versions are read after the handler ran, unlike the query's (read before): an
        invalidation of an entity only the result names that lands while the handler runs is not
        seen, and the entry may live until its ttl. Keep such entries' ttl short where that matters.
        """
        assert plan.result_tags is not None  # noqa: S101 - checked by the caller
        known = set(tag_keys or ())
        keys = [k for k in dependency_tag_keys(plan.result_tags(message, data), scope) if k not in known]
        if not keys:
            return [], []
        found = await self._backend.multi_get(keys)
        versions = list(found)
        if None in versions:
            created = await self._create_tags(keys, versions)
            if created is None:
                return None
            versions = created
        return keys, versions

    async def _create_tags(self, tag_keys: list[str], versions: list[Any]) -> list[Any] | None:
        """Give every missing tag counter a random start; None when the cache fails (store nothing)."""
        try:
            for position, tag_key in enumerate(tag_keys):
                if versions[position] is not None:
                    continue
                start = secrets.randbits(_START_BITS)
                if await self._backend.add(tag_key, start, self._tag_ttl):
                    versions[position] = start
                else:
                    versions[position] = await self._backend.get(tag_key)
        except Exception as exc:  # noqa: BLE001 - fail open
            self._failures.record("add", exc, key=tag_keys[0])
            return None
        return None if None in versions else versions

    def __repr__(self) -> str:
        names = ", ".join(sorted(t.__qualname__ for t in self._plans))
        return f"QueryCache({self._backend!r}, policies for [{names}])"
