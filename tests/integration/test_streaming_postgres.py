"""`GET /users/export` on PostgreSQL under uvicorn: 100,000 rows with flat memory, and a client that
hangs up leaves no transaction open."""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from dependency_injector import providers
from examples.users.tour import free_port
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cqrskit.sqlalchemy import Database
from tests import services
from tests.users.conftest import ADMIN, CHEAP_SCRYPT_N, service_schema

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROWS = 100_000
PAGE = 4096  # bytes per memory page, for /proc/self/statm

SEED = """
INSERT INTO users (id, email, username, full_name, password_hash, role, is_active, created_at, updated_at)
SELECT md5(n::text)::uuid, 'user' || n || '@example.com', 'user' || lpad(n::text, 6, '0'),
       'User ' || n, 'not-a-hash', 'member', true, now(), now()
FROM generate_series(1, :rows) AS n
"""


def rss_bytes() -> int:
    """This process's resident memory now (the server runs in it, on the test's event loop)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


@pytest.fixture
async def service(unique_name: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """The example app under uvicorn, on its own schema holding `ROWS` users; its connections are
    named `unique_name` in pg_stat_activity. Yields the base URL and an engine to look with."""
    from examples.users.app import create_app
    from examples.users.container import Container
    from examples.users.passwords import ScryptCost
    from examples.users.settings import Settings

    postgres_url = services.require("PostgreSQL", services.POSTGRES_URL)
    redis_url = services.require("Redis", services.REDIS_URL)
    async with service_schema(postgres_url, redis_url, unique_name):
        container = Container()
        settings = Settings(
            demo=True,
            database_url=postgres_url,
            database_schema=unique_name,
            redis_url=redis_url,
            cache_namespace=unique_name,
            scrypt_cost=ScryptCost(n=CHEAP_SCRYPT_N),
            configure_logging=False,
        )
        container.settings.override(providers.Object(settings))
        server_settings = {"search_path": unique_name, "application_name": unique_name}
        container.database.override(
            providers.Singleton(
                Database,
                url=postgres_url,
                engine_options={"connect_args": {"server_settings": server_settings}},
            )
        )
        port = free_port()
        config = uvicorn.Config(
            create_app(container), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        watcher = create_async_engine(postgres_url)
        try:
            while not server.started:
                assert not serving.done(), "uvicorn stopped"
                await asyncio.sleep(0.02)
            async with watcher.begin() as connection:
                await connection.execute(text(f'SET LOCAL search_path TO "{unique_name}"'))
                await connection.execute(text(SEED), {"rows": ROWS})
            yield f"http://127.0.0.1:{port}", watcher
        finally:
            server.should_exit = True
            await serving
            await watcher.dispose()
            await container.database().dispose()


async def open_transactions(watcher: AsyncEngine, name: str) -> list[str]:
    """The states of the service's connections that are inside a transaction."""
    async with watcher.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT state FROM pg_stat_activity WHERE application_name = :name "
                "AND (xact_start IS NOT NULL OR state <> 'idle')"
            ),
            {"name": name},
        )
        return [row.state for row in rows]


class TestExportOnPostgres:
    """Streaming through a server-side cursor, over real HTTP."""

    async def test_100k_rows_stream_with_flat_memory(
        self, service: tuple[str, AsyncEngine], unique_name: str
    ) -> None:
        """Every row arrives, and the process's memory hardly grows while they flow (printed)."""
        base_url, watcher = service
        async with watcher.connect() as connection:
            users = await connection.scalar(text(f'SELECT count(*) FROM "{unique_name}".users'))
        assert users is not None
        assert users >= ROWS
        samples: list[int] = []
        count = 0
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=120) as client,
            client.stream("GET", "/users/export", headers=ADMIN) as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if not line:
                    continue
                count += 1
                if count == users:
                    assert json.loads(line)["username"] == f"user{ROWS:06d}"  # the last, by username
                if count % 5_000 == 0:
                    samples.append(rss_bytes())
        assert count == users  # the demo accounts and the seeded rows
        growth = max(samples) - samples[0]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(
            f"\nstreamed {count:,} rows; RSS after 5,000 rows {samples[0] / 2**20:.1f} MiB, "
            f"largest sample {max(samples) / 2**20:.1f} MiB (growth {growth / 2**20:.1f} MiB), "
            f"process peak {peak / 2**20:.1f} MiB"
        )
        # Generous: 100,000 users held as objects would take several hundred MiB.
        assert growth < 64 * 2**20

    async def test_a_client_that_hangs_up_leaves_no_transaction(
        self, service: tuple[str, AsyncEngine], unique_name: str
    ) -> None:
        """After 10 rows the client disconnects; the handler's transaction and cursor are gone."""
        base_url, watcher = service
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            async with client.stream("GET", "/users/export", headers=ADMIN) as response:
                lines = response.aiter_lines()
                received = [await anext(lines) for _ in range(10)]
                assert len(received) == 10
                # While the client holds the stream, the cursor's transaction is open.
                assert await open_transactions(watcher, unique_name) != []
            # Leaving the block closed the connection mid-body.
        states: list[Any] = ["not polled"]
        for _ in range(500):
            states = await open_transactions(watcher, unique_name)
            if not states:
                break
            await asyncio.sleep(0.02)
        assert states == []
