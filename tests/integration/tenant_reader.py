"""Run as a second process by the tenant Redis test: read and rename through real buses, for two tenants.

Usage: ``python tests/integration/tenant_reader.py REDIS_URL NAMESPACE``. It prints one JSON object:
what each read answered and whether it came from the cache.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from cqrskit import Context
from cqrskit.caching import redis_cache
from tests.tenancy_app import GetArticle, GetAuthor, RenameAuthor, TenantStore, buses


async def main(url: str, namespace: str) -> None:
    cache = redis_cache(url, namespace=namespace)
    seen: dict[str, Any] = {}
    try:
        queries, commands = buses(TenantStore(), cache)
        for tenant in ("globex", "acme"):
            result = await queries.execute(GetAuthor("1"), Context(tenant=tenant))
            assert result.cache_info is not None
            seen[f"author {tenant}"] = [result.data.name, result.cache_info.hit]
            article = await queries.execute(GetArticle("9"), Context(tenant=tenant))
            assert article.cache_info is not None
            seen[f"article {tenant}"] = [article.data.title, article.cache_info.hit]
        (await commands.execute(RenameAuthor("1", "Ada Lovelace"), Context(tenant="acme"))).unwrap()
    finally:
        await cache.close()
    print(json.dumps(seen, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
