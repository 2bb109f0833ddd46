"""Cache tags derived from results, through a Redis shared by processes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs
import pytest

from cqrskit import Context, Query, QueryBus
from cqrskit.caching import CacheBackend, CachePolicy, QueryCache
from tests.integration.test_redis_cache import invalidate_in_another_process

pytestmark = pytest.mark.redis


@attrs.frozen
class ArticleDto:
    id: str
    title: str
    author: str


@attrs.frozen
class GetArticle(Query[ArticleDto]):
    article_id: str


ARTICLES = {"1": ArticleDto("1", "Streams", "ann"), "2": ArticleDto("2", "Tenants", "bob")}


class GetArticleHandler:
    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, query: GetArticle, context: Context) -> ArticleDto:
        self.calls += 1
        return ARTICLES[query.article_id]


def by_author(query: GetArticle, article: ArticleDto) -> Iterable[tuple[str, str]]:
    return [("author", article.author)]


POLICY = CachePolicy[GetArticle](ttl=60, tags=lambda q: [("article", q.article_id)], result_tags=by_author)


async def hit(bus: QueryBus, article_id: str) -> bool:
    result = await bus.execute(GetArticle(article_id))
    assert result.cache_info is not None
    return result.cache_info.hit


class TestResultTagsOnRedis:
    """An entry tagged with its author is dropped by a command affecting that author, everywhere."""

    async def test_another_process_drops_the_authors_entries_in_every_client(
        self, caches: Callable[[], CacheBackend], redis_url: str, unique_name: str
    ) -> None:
        """Two clients share the entries; a third process touches author ann; only ann's article misses."""
        first = QueryBus({GetArticle: GetArticleHandler()}, [QueryCache(caches(), {GetArticle: POLICY})])
        second = QueryBus({GetArticle: GetArticleHandler()}, [QueryCache(caches(), {GetArticle: POLICY})])
        assert not await hit(first, "1")
        assert not await hit(first, "2")
        assert await hit(second, "1")

        await invalidate_in_another_process(redis_url, unique_name, "author", "ann")

        assert not await hit(second, "1")
        assert await hit(first, "1")  # the reload of the line above was stored again
        assert await hit(first, "2")
        assert await hit(second, "2")
