"""Several uvicorn workers sharing one PostgreSQL database and one Redis cache."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from cqrskit.fastapi import OPERATION_ID_HEADER

# The example is built on the caching behaviours; until they are merged these tests cannot run.
pytest.importorskip("cqrskit.caching", reason="examples/users needs cqrskit.caching, not merged yet")

from examples.users import tour

from tests.users.conftest import ADMIN, new_user, service_schema

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
async def schema(postgres_url: str, redis_url: str, unique_name: str) -> AsyncIterator[str]:
    """A PostgreSQL schema and a Redis key prefix of this test's own, removed afterwards."""
    async with service_schema(postgres_url, redis_url, unique_name) as name:
        yield name


def _worker(response: httpx.Response) -> str:
    """The process that answered: operation ids start with a random prefix of their process."""
    return response.headers[OPERATION_ID_HEADER].rsplit("-", 1)[0]


async def _reads_from_both(client: httpx.AsyncClient, user_id: str) -> list[httpx.Response]:
    """GET the user until both workers have answered it from the cache (bounded); return every response."""
    responses: list[httpx.Response] = []
    while len({_worker(response) for response in responses if response.headers["X-Cache"] == "hit"}) < 2:
        assert len(responses) < 200, "200 requests on fresh connections did not reach both workers"
        responses.append(await client.get(f"/users/{user_id}", headers=ADMIN))
    return responses


class TestWorkers:
    """Two workers: one database, one cache, invalidations seen by both."""

    async def test_update_seen_by_every_worker(self, schema: str, postgres_url: str, redis_url: str) -> None:
        """Both workers serve cached reads; after one of them updates the user, both serve the new value."""
        environ = {
            "USERS_DATABASE_URL": postgres_url,
            "USERS_DATABASE_SCHEMA": schema,
            "USERS_REDIS_URL": redis_url,
            "USERS_CACHE_NAMESPACE": schema,
        }
        with tour.running_service(environ, workers=2) as base_url:
            # A fresh connection per request, so the kernel spreads them over both workers.
            async with httpx.AsyncClient(
                base_url=base_url, timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0)
            ) as client:
                created = await client.post("/users", json=new_user("shared"), headers=ADMIN)
                assert created.status_code == 201, created.text
                user_id = created.json()["id"]
                first = await _reads_from_both(client, user_id)
                assert {response.json()["full_name"] for response in first} == {"Shared"}
                assert first[0].headers["X-Cache"] == "miss"

                updated = await client.patch(
                    f"/users/{user_id}", json={"full_name": "Changed"}, headers=ADMIN
                )
                assert updated.status_code == 200
                # Both workers had the old value cached; each now answers the new one, from the cache.
                after = await _reads_from_both(client, user_id)
                assert after[0].headers["X-Cache"] == "miss"
                assert {response.json()["full_name"] for response in after} == {"Changed"}

                stats = await client.get("/users/stats", headers=ADMIN)
                assert stats.json()["total"] == 4  # three demo accounts, seeded once, and this user
