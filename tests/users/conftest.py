"""The user service under test: a real app on SQLite + memory cache, and on PostgreSQL + Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from dependency_injector import providers
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cqrskit.fastapi import OPERATION_ID_HEADER
from tests import services
from tests.asgi import asgi_client

if TYPE_CHECKING:
    from examples.users.container import Container

ADMIN = {"Authorization": "Bearer admin-token"}
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
ALICE_ID = "00000000-0000-4000-8000-00000000a11c"
BOB_ID = "00000000-0000-4000-8000-000000000b0b"
CHEAP_SCRYPT_N = 16  # tests hash hundreds of passwords; production uses the default cost


def new_user(name: str = "carol", **changes: Any) -> dict[str, Any]:
    """A valid CreateUser body."""
    body: dict[str, Any] = {
        "email": f"{name}@example.com",
        "username": name,
        "password": "correct horse battery",
        "full_name": name.title(),
    }
    body.update(changes)
    return body


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.redis])])
async def container(
    request: pytest.FixtureRequest, tmp_path: Any, unique_name: str
) -> AsyncIterator[Container]:
    """A service container on SQLite + memory cache, or on its own PostgreSQL schema + Redis prefix."""
    from examples.users.container import Container
    from examples.users.passwords import ScryptCost
    from examples.users.settings import Settings

    cheap = ScryptCost(n=CHEAP_SCRYPT_N)
    container = Container()
    if request.param == "sqlite":
        container.settings.override(
            providers.Object(
                Settings(
                    database_url=f"sqlite+aiosqlite:///{tmp_path / 'users.db'}",
                    scrypt_cost=cheap,
                    configure_logging=False,
                    demo=True,
                )
            )
        )
        yield container
        return
    postgres_url = services.require("PostgreSQL", services.POSTGRES_URL)
    redis_url = services.require("Redis", services.REDIS_URL)
    async with service_schema(postgres_url, redis_url, unique_name):
        container.settings.override(
            providers.Object(
                Settings(
                    database_url=postgres_url,
                    database_schema=unique_name,
                    redis_url=redis_url,
                    cache_namespace=unique_name,
                    scrypt_cost=cheap,
                    configure_logging=False,
                    demo=True,
                )
            )
        )
        yield container


@asynccontextmanager
async def service_schema(postgres_url: str, redis_url: str, name: str) -> AsyncIterator[str]:
    """A PostgreSQL schema and a Redis key prefix called `name`, removed on exit, also on failure."""
    admin = create_async_engine(postgres_url)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        await admin.dispose()
        await services.drop_redis_keys(redis_url, name)


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client driving the real app (lifespan included) in process."""
    from examples.users.app import create_app

    app = create_app(container)
    async with asgi_client(app, base_url="http://users.test") as client:
        yield client


async def create(client: httpx.AsyncClient, name: str = "carol", **changes: Any) -> str:
    """Create a user as the admin and return its id."""
    response = await client.post("/users", json=new_user(name, **changes), headers=ADMIN)
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Check that `response` is an RFC 9457 problem with `status` and the ids to quote; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:cqrskit:problem:")
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == response.request.url.path
    assert body["operation_id"] == response.headers[OPERATION_ID_HEADER]
    assert body["correlation_id"] == response.headers["X-Correlation-ID"]
    return body


async def events_delivered(container: Container, within: float = 30.0) -> None:
    """Wait until the embedded consumer has delivered every event in the outbox (polls its table)."""
    import asyncio
    import time

    from sqlalchemy import text

    deadline = time.monotonic() + within
    while True:
        async with container.database().read_session() as session:
            pending = await session.scalar(
                text("SELECT count(*) FROM cqrskit_outbox WHERE published_at IS NULL")
            )
        if not pending:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{pending} events still undelivered after {within}s")
        await asyncio.sleep(0.02)
