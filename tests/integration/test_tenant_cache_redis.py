"""Two tenants with the same ids share one Redis from two processes, and never see each other's entries."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cqrskit import Context
from cqrskit.caching import CacheBackend, redis_cache
from tests import services
from tests.tenancy_app import GetArticle, GetAuthor, TenantStore, buses

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
READER = Path(__file__).with_name("tenant_reader.py")
ACME = Context(tenant="acme")
GLOBEX = Context(tenant="globex")


@pytest.fixture
async def cache(redis_url: str, unique_name: str) -> AsyncIterator[CacheBackend]:
    """A Redis cache under this test's own namespace; its keys are deleted afterwards, also on failure."""
    made = redis_cache(redis_url, namespace=unique_name)
    try:
        yield made
    finally:
        await made.close()
        await services.drop_redis_keys(redis_url, f"{unique_name}:")


async def read_in_another_process(redis_url: str, namespace: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(READER),
        redis_url,
        namespace,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    answer: dict[str, Any] = json.loads(stdout.decode())
    return answer


def hit(result: Any) -> bool:
    assert result.cache_info is not None
    return bool(result.cache_info.hit)


class TestTwoProcessesTwoTenants:
    """This process caches Acme's answers; another reads both tenants and renames Acme's author."""

    async def test_no_entry_or_invalidation_crosses_tenants(
        self, cache: CacheBackend, redis_url: str, unique_name: str
    ) -> None:
        """The other process misses Globex, hits Acme; its rename of Acme's author drops Acme's only."""
        queries, _ = buses(TenantStore(), cache)
        assert (await queries.execute(GetAuthor("1"), ACME)).data.name == "Ada of Acme"
        assert (await queries.execute(GetArticle("9"), ACME)).data.title == "Acme news"

        seen = await read_in_another_process(redis_url, unique_name)

        assert seen == {
            "author globex": ["Grace of Globex", False],
            "article globex": ["Globex news", False],
            "author acme": ["Ada of Acme", True],
            "article acme": ["Acme news", True],
        }
        # Its rename of Acme's author 1 dropped Acme's author and Acme's article (tagged from its result)...
        assert not hit(await queries.execute(GetAuthor("1"), ACME))
        assert not hit(await queries.execute(GetArticle("9"), ACME))
        # ...and left Globex's entries, stored by the other process, to be read here.
        globex_author = await queries.execute(GetAuthor("1"), GLOBEX)
        assert hit(globex_author)
        assert globex_author.data.name == "Grace of Globex"
        assert hit(await queries.execute(GetArticle("9"), GLOBEX))
