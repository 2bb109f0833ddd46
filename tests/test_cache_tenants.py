"""Caching per tenant: keys and tags carry the tenant, and nothing cached crosses tenants."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from cqrskit import AffectedEntity, Context, QueryBus, Result
from cqrskit.caching import CacheInvalidation, QueryCache
from cqrskit.scope import TransactionScope, current_transaction
from cqrskit.testing import InMemoryCache
from tests.caching_app import POLICIES as USER_POLICIES
from tests.caching_app import GetUser, GetUserHandler, UserStore
from tests.tenancy_app import GetArticle, GetAuthor, RenameAuthor, TenantStore, buses

ACME = Context(tenant="acme")
GLOBEX = Context(tenant="globex")


def hit(result: Any) -> bool:
    assert result.cache_info is not None
    return bool(result.cache_info.hit)


class TestKeys:
    """What the keys look like with and without a tenant."""

    def test_a_service_without_tenants_keeps_its_keys(self) -> None:
        """No tenant: the key is the query's key as before, with no tenant text at all."""
        cache = QueryCache(InMemoryCache(), USER_POLICIES)
        assert cache.key_for(GetUser("42")) == 'tests.caching_app.GetUser:v1:{"user_id":"42"}'

    def test_a_tenant_starts_the_key(self) -> None:
        """A tenant's key is the plain key behind ``tenant:<tenant>:``."""
        cache = QueryCache(InMemoryCache(), USER_POLICIES)
        plain = cache.key_for(GetUser("42"))
        assert cache.key_for(GetUser("42"), tenant="acme") == "tenant:acme:" + plain

    def test_a_colon_in_a_tenant_cannot_reach_into_another_tenants_keys(self) -> None:
        """A tenant holding ``:`` is encoded, so ``a:tag`` never shares a prefix with tenant ``a``."""
        cache = QueryCache(InMemoryCache(), USER_POLICIES)
        assert cache.key_for(GetUser("42"), tenant="a:tag").startswith("tenant:a%3Atag:")
        assert not cache.key_for(GetUser("42"), tenant="a:tag").startswith("tenant:a:")

    async def test_a_dispatch_without_a_tenant_reads_the_keys_it_always_read(self) -> None:
        """No tenant: one round trip for the entry and its tags, under their plain keys."""
        backend = InMemoryCache()
        queries = QueryBus({GetUser: GetUserHandler(UserStore())}, [QueryCache(backend, USER_POLICIES)])
        await queries.execute(GetUser("42"))
        assert backend.calls[0] == (
            "multi_get",
            ('tests.caching_app.GetUser:v1:{"user_id":"42"}', "tag:user:42", "tag:user"),
        )

    async def test_a_dispatch_with_a_tenant_reads_the_tenants_keys(self) -> None:
        """With a tenant the entry and every tag key it depends on are that tenant's."""
        backend = InMemoryCache()
        queries, _ = buses(TenantStore(), backend)
        await queries.execute(GetAuthor("1"), ACME)
        assert backend.calls[0] == (
            "multi_get",
            (
                'tenant:acme:tests.tenancy_app.GetAuthor:v1:{"author_id":"1"}',
                "tenant:acme:tag:author:1",
                "tenant:acme:tag:author",
            ),
        )


class TestNothingCrossesTenants:
    """Two tenants with the same ids and the same queries."""

    async def test_each_tenant_gets_its_own_answer_and_its_own_entry(self) -> None:
        """Acme's cached answer is never served to Globex: Globex's first read is a miss."""
        store = TenantStore()
        queries, _ = buses(store, InMemoryCache())
        first = await queries.execute(GetAuthor("1"), ACME)
        assert first.data.name == "Ada of Acme"
        assert hit(await queries.execute(GetAuthor("1"), ACME))
        other = await queries.execute(GetAuthor("1"), GLOBEX)
        assert not hit(other)
        assert other.data.name == "Grace of Globex"
        assert (await queries.execute(GetAuthor("1"), GLOBEX)).data.name == "Grace of Globex"
        assert store.reads == {"acme": 1, "globex": 1}

    async def test_one_tenants_invalidation_leaves_the_others_entries(self) -> None:
        """Renaming Acme's author 1 drops Acme's entry and keeps Globex's (same kind, same id)."""
        store = TenantStore()
        queries, commands = buses(store, InMemoryCache())
        await queries.execute(GetAuthor("1"), ACME)
        await queries.execute(GetAuthor("1"), GLOBEX)
        assert (await commands.execute(RenameAuthor("1", "Ada Lovelace"), ACME)).is_success
        renamed = await queries.execute(GetAuthor("1"), ACME)
        assert not hit(renamed)
        assert renamed.data.name == "Ada Lovelace"
        assert hit(await queries.execute(GetAuthor("1"), GLOBEX))

    async def test_tags_from_results_are_per_tenant(self) -> None:
        """An article tagged with its author (from the result) drops for its own tenant's author only."""
        store = TenantStore()
        queries, commands = buses(store, InMemoryCache())
        await queries.execute(GetArticle("9"), ACME)
        await queries.execute(GetArticle("9"), GLOBEX)
        assert hit(await queries.execute(GetArticle("9"), ACME))
        await commands.execute(RenameAuthor("1", "Grace Hopper"), GLOBEX)
        assert hit(await queries.execute(GetArticle("9"), ACME))
        again = await queries.execute(GetArticle("9"), GLOBEX)
        assert not hit(again)
        assert again.data.title == "Globex news"

    async def test_an_untenanted_invalidation_leaves_tenants_entries(self) -> None:
        """A command without a tenant bumps the untenanted tags only, not a tenant's."""
        backend = InMemoryCache()
        queries, _ = buses(TenantStore(), backend)
        await queries.execute(GetAuthor("1"), ACME)
        await CacheInvalidation(backend)(RenameAuthor("1", "x"), Context(), renamed_author)
        assert backend.calls[-1] == ("increment", ("tag:author:*",))
        assert hit(await queries.execute(GetAuthor("1"), ACME))


async def renamed_author(message: Any, context: Context) -> Result[None]:
    """The rest of a command's pipeline: author 1 was updated."""
    return Result.success(None, affected_entities=[AffectedEntity("author", "1", "updated")])


class RecordingJournal:
    """An `InvalidationJournal` in a list: what the command's transaction recorded."""

    def __init__(self) -> None:
        self.records: dict[str, Sequence[str]] = {}

    async def record(self, tag_keys: Sequence[str]) -> str:
        record_id = str(len(self.records))
        self.records[record_id] = tuple(tag_keys)
        return record_id

    async def applied(self, record_ids: Collection[str]) -> None:
        for record_id in record_ids:
            self.records.pop(record_id, None)

    async def pending(self, limit: int) -> Sequence[tuple[str, Sequence[str]]]:
        return list(self.records.items())[:limit]


class TestJournal:
    """The invalidation journal records the tenant's tag keys, so a late apply drops the right ones."""

    async def test_a_recorded_invalidation_names_the_tenants_tags(self) -> None:
        """The record holds Acme's keys; applied later by `apply_pending`, Globex keeps its entry."""
        backend = InMemoryCache()
        store = TenantStore()
        queries, _ = buses(store, backend)
        journal = RecordingJournal()
        invalidation = CacheInvalidation(backend, journal=journal)
        await queries.execute(GetAuthor("1"), ACME)
        await queries.execute(GetAuthor("1"), GLOBEX)

        scope = TransactionScope(current_transaction())
        with scope.entered():
            await invalidation(RenameAuthor("1", "x"), ACME, renamed_author)
        assert list(journal.records.values()) == [("tenant:acme:tag:author:1", "tenant:acme:tag:author:*")]
        scope.discard()  # the process died before its fast path: another process applies the record
        assert await invalidation.apply_pending() == 1
        assert not hit(await queries.execute(GetAuthor("1"), ACME))
        assert hit(await queries.execute(GetAuthor("1"), GLOBEX))
