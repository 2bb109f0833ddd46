"""Two tenants whose users have the same ids: a store per tenant, and handlers that read the caller's.

The caching tests of tenancy share it, in process (`tests/test_cache_tenants.py`) and across two
processes over Redis (`tests/integration/test_tenant_cache_redis.py`, `tests/integration/tenant_reader.py`).
"""

from __future__ import annotations

from collections import Counter

import attrs

from cqrskit import AffectedEntity, Command, CommandBus, Context, NotFoundError, Query, QueryBus, Result
from cqrskit.caching import CacheInvalidation, CachePolicy, QueryCache


@attrs.frozen
class Author:
    id: str
    name: str


@attrs.frozen
class Article:
    id: str
    title: str
    author: str


@attrs.frozen
class GetAuthor(Query[Author]):
    author_id: str


@attrs.frozen
class GetArticle(Query[Article]):
    article_id: str


@attrs.frozen
class RenameAuthor(Command[None]):
    author_id: str
    name: str


class TenantStore:
    """Each tenant's authors and articles, under the same ids, and how many reads each tenant made."""

    def __init__(self) -> None:
        self.authors: dict[str, dict[str, Author]] = {
            "acme": {"1": Author("1", "Ada of Acme")},
            "globex": {"1": Author("1", "Grace of Globex")},
        }
        self.articles: dict[str, dict[str, Article]] = {
            "acme": {"9": Article("9", "Acme news", "1")},
            "globex": {"9": Article("9", "Globex news", "1")},
        }
        self.reads: Counter[str] = Counter()

    def tenant_of(self, context: Context) -> str:
        if context.tenant is None:
            raise NotFoundError("no tenant")
        self.reads[context.tenant] += 1
        return context.tenant


class GetAuthorHandler:
    def __init__(self, store: TenantStore) -> None:
        self.store = store

    async def handle(self, query: GetAuthor, context: Context) -> Author:
        return self.store.authors[self.store.tenant_of(context)][query.author_id]


class GetArticleHandler:
    def __init__(self, store: TenantStore) -> None:
        self.store = store

    async def handle(self, query: GetArticle, context: Context) -> Article:
        return self.store.articles[self.store.tenant_of(context)][query.article_id]


class RenameAuthorHandler:
    def __init__(self, store: TenantStore) -> None:
        self.store = store

    async def handle(self, command: RenameAuthor, context: Context) -> Result[None]:
        tenant = self.store.tenant_of(context)
        self.store.authors[tenant][command.author_id] = Author(command.author_id, command.name)
        changed = AffectedEntity("author", command.author_id, "updated")
        return Result.success(None, affected_entities=[changed])


POLICIES = {
    GetAuthor: CachePolicy[GetAuthor](ttl=300, tags=lambda q: [("author", q.author_id)]),
    GetArticle: CachePolicy[GetArticle](ttl=300, result_tags=lambda q, article: [("author", article.author)]),
}


def buses(store: TenantStore, cache: object) -> tuple[QueryBus, CommandBus]:
    """A query bus caching in `cache`, and a command bus invalidating it."""
    queries = QueryBus(
        {GetAuthor: GetAuthorHandler(store), GetArticle: GetArticleHandler(store)},
        [QueryCache(cache, POLICIES)],
    )
    commands = CommandBus({RenameAuthor: RenameAuthorHandler(store)}, [CacheInvalidation(cache)])
    return queries, commands
