"""The example service under faults: connections killed, PostgreSQL down, the SQLite file locked.

No 500 from a dropped connection (reads are retried on fresh connections), a 503 with ``Retry-After``
while the database is down and recovery when it is back, a 503 or a retried success while another
connection holds SQLite's write lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from dependency_injector import providers
from sqlalchemy.engine import make_url

from tests import services
from tests.asgi import asgi_client
from tests.users.conftest import ADMIN, CHEAP_SCRYPT_N, assert_problem, create
from tests.users.faults import own_database, proxied, terminate_backends


def service_settings(database_url: str, **changes: Any) -> Any:
    from examples.users.passwords import ScryptCost
    from examples.users.settings import Settings

    return Settings(
        database_url=database_url,
        scrypt_cost=ScryptCost(n=CHEAP_SCRYPT_N),
        configure_logging=False,
        demo=True,
        **changes,
    )


@asynccontextmanager
async def service(settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (lifespan included) on `settings`, driven over HTTP in process."""
    from examples.users.app import create_app
    from examples.users.container import Container

    container = Container()
    container.settings.override(providers.Object(settings))
    async with asgi_client(create_app(container), base_url="http://users.test") as client:
        yield client


def assert_unavailable(response: httpx.Response) -> None:
    body = assert_problem(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert body["type"] == "urn:cqrskit:problem:unavailable"


@pytest.mark.postgres
class TestPostgres:
    """On a database this test creates (and drops): its connections killed, then the server cut off."""

    async def test_killed_connections_give_no_500(self) -> None:
        server_url = services.require("PostgreSQL", services.POSTGRES_URL)
        async with own_database(server_url) as url, service(service_settings(url)) as client:
            ids = [await create(client, name) for name in ("dora", "erin", "fred")]
            name = make_url(url).database
            assert name is not None
            statuses: list[int] = []
            for round_ in range(3):
                killed = await terminate_backends(server_url, name)
                assert killed >= 1  # the service's pooled connections
                # Reads that miss the cache (a new filter each time), then a read by id and a write.
                page = await client.get(
                    "/users", params={"email_contains": f"e-{round_}", "page_size": "5"}, headers=ADMIN
                )
                one = await client.get(f"/users/{ids[round_]}", headers=ADMIN)
                await terminate_backends(server_url, name)
                write = await client.patch(
                    f"/users/{ids[round_]}", json={"full_name": f"Renamed {round_}"}, headers=ADMIN
                )
                statuses += [page.status_code, one.status_code, write.status_code]
            print("status codes after pg_terminate_backend:", statuses)
            assert statuses == [200] * 9

    async def test_postgres_down_is_a_503_and_the_service_recovers(self) -> None:
        server_url = services.require("PostgreSQL", services.POSTGRES_URL)
        async with own_database(server_url) as url:
            with proxied(url) as (through_proxy, proxy):
                async with service(service_settings(through_proxy)) as client:
                    user_id = await create(client, "dora")
                    proxy.cut()  # nothing listens on the service's database port any more
                    responses = [
                        await client.get("/users", params={"email_contains": "x"}, headers=ADMIN),
                        await client.get(
                            f"/users/{user_id}", params={"include_inactive": "true"}, headers=ADMIN
                        ),
                        await client.post("/users", json=_user("erin"), headers=ADMIN),
                        await client.patch(f"/users/{user_id}", json={"full_name": "D"}, headers=ADMIN),
                        await client.delete(f"/users/{user_id}", headers=ADMIN),
                    ]
                    print("status codes while PostgreSQL is down:", [r.status_code for r in responses])
                    for response in responses:
                        assert_unavailable(response)
                    proxy.restore()
                    back = await client.get("/users", params={"email_contains": "y"}, headers=ADMIN)
                    assert back.status_code == 200
                    assert (await client.post("/users", json=_user("erin"), headers=ADMIN)).status_code == 201


def _user(name: str) -> dict[str, str]:
    return {
        "email": f"{name}@example.com",
        "username": name,
        "password": "correct horse battery",
        "full_name": name.title(),
    }


class TestSqliteLocked:
    """Another connection holds SQLite's write lock (BEGIN EXCLUSIVE): reads go on, writes get 503."""

    async def test_a_held_lock_is_a_503_then_a_success(self, tmp_path: Path) -> None:
        path = tmp_path / "users.db"
        settings = service_settings(f"sqlite+aiosqlite:///{path}", sqlite_busy_timeout=0.2)
        async with service(settings) as client:
            user_id = await create(client, "dora")
            # The service's embedded delivery takes the write lock briefly as it polls: wait for it in a
            # thread, so the event loop (and that delivery) can finish and let it go.
            holder = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
            try:
                await asyncio.to_thread(holder.execute, "BEGIN EXCLUSIVE")
                write = await client.patch(f"/users/{user_id}", json={"full_name": "Locked"}, headers=ADMIN)
                read = await client.get("/users", params={"email_contains": "dora"}, headers=ADMIN)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            print("while locked: write", write.status_code, "read", read.status_code)
            assert write.status_code != 500
            assert_unavailable(write)
            assert read.status_code == 200
            after = await client.patch(f"/users/{user_id}", json={"full_name": "Free"}, headers=ADMIN)
            assert after.status_code == 200
