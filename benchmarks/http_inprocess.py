"""Where a cached read's time goes in the HTTP layer, measured in one process, without uvicorn.

Run: ``PYTHONPATH=src:. python -m benchmarks.http_inprocess``.

`benchmarks/http.py` measures requests per second over loopback, where the load generator shares the
machine with the server. This script drives the same two apps in process, through httpx's
ASGITransport, and times one cached ``GET /users/{id}`` (Alice reading herself) in three forms:

- ``bare``: `benchmarks/_bare_users.py`, the endpoint written by hand;
- ``cqrskit, Depends``: the example service's endpoint, which receives its query bus and its request
  `Context` as FastAPI dependencies (``Annotated[..., Depends(...)]``), as the docs show;
- ``cqrskit, direct``: the same bus and the same `Context`, made by calling the very functions those
  dependencies wrap (`from_container`, `context_dependency(from_request=...)`) inside the endpoint, so
  FastAPI resolves no dependency.

The difference between the last two is what FastAPI's dependency resolution costs per request; the
difference between ``bare`` and ``cqrskit, direct`` is what the bus and its behaviours cost. Each
figure is the median over rounds of the mean time per request (the httpx client's own work included,
the same for all three).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import Request
from fastapi.responses import Response

ROUNDS = 7
REQUESTS = 2_000


def _environment(directory: Path, name: str) -> None:
    os.environ["USERS_DATABASE_URL"] = f"sqlite+aiosqlite:///{directory / (name + '.db')}"
    os.environ["USERS_SCRYPT_N"] = "1024"
    os.environ["USERS_LOG_LEVEL"] = "warning"
    os.environ.pop("USERS_REDIS_URL", None)
    os.environ.pop("USERS_RABBITMQ_URL", None)


def _add_direct_route(app: Any) -> None:
    """Add ``/direct/users/{id}``: the example's read, with its bus and context made by hand."""
    from examples.users.auth import current_principal
    from examples.users.messages import GetUser

    from cqrskit.fastapi import context_dependency, from_container, result_response

    query_bus = from_container("query_bus")
    request_context = context_dependency(from_request=current_principal)

    @app.get("/direct/users/{user_id}")
    async def get_user_direct(user_id: UUID, request: Request, include_inactive: bool = False) -> Response:
        bus = await query_bus(request)
        return result_response(
            await bus.execute(GetUser(user_id, include_inactive), await request_context(request))
        )


async def _time(client: Any, path: str, headers: dict[str, str]) -> float:
    for _ in range(200):
        response = await client.get(path, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}: {response.text}")
    started = time.perf_counter()
    for _ in range(REQUESTS):
        await client.get(path, headers=headers)
    return (time.perf_counter() - started) / REQUESTS * 1e6


async def _measure() -> dict[str, float]:
    import httpx
    from examples.users.tour import ALICE_ID

    directory = Path(tempfile.mkdtemp(prefix="cqrskit-http-inprocess-"))
    headers = {"Authorization": "Bearer alice-token"}

    def bare() -> Any:
        from benchmarks._bare_users import create_app

        _environment(directory, "bare")
        return create_app()

    def example() -> Any:
        from examples.users.app import create_app

        _environment(directory, "example")
        app = create_app()
        _add_direct_route(app)
        return app

    cases: list[tuple[str, Callable[[], Any], str]] = [
        ("bare", bare, f"/users/{ALICE_ID}"),
        ("cqrskit, Depends", example, f"/users/{ALICE_ID}"),
        ("cqrskit, direct", example, f"/direct/users/{ALICE_ID}"),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    async with AsyncExitStack() as stack:
        clients = {}
        apps = {}
        for factory in (bare, example):
            app = apps[factory] = factory()
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            clients[factory] = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://bench")
            )
        for _ in range(ROUNDS):  # the cases take turns within each round
            for name, factory, path in cases:
                samples[name].append(await _time(clients[factory], path, headers))
        medians = {name: statistics.median(values) for name, values in samples.items()}
        medians.update(await _parts(apps[example], UUID(str(ALICE_ID))))
    return medians


async def _parts(app: Any, user_id: UUID) -> dict[str, float]:
    """Time the example's bus dispatch of a cached GetUser, and `result_response` of its Result."""
    from examples.users.messages import GetUser

    from cqrskit import Context, Principal
    from cqrskit.fastapi import result_response

    bus = app.state.container.query_bus()
    context = Context(principal=Principal(str(user_id), permissions={"user:read"}))
    query = GetUser(user_id, include_inactive=False)
    result = await bus.execute(query, context)
    dispatch, render = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(REQUESTS):
            result = await bus.execute(query, context)
        dispatch.append((time.perf_counter() - started) / REQUESTS * 1e6)
        started = time.perf_counter()
        for _ in range(REQUESTS):
            result_response(result)
        render.append((time.perf_counter() - started) / REQUESTS * 1e6)
    if result.cache_info is None or not result.cache_info.hit:
        raise RuntimeError(f"expected a cache hit, got {result!r}")
    return {
        "part: bus dispatch of the cached GetUser": statistics.median(dispatch),
        "part: result_response of its Result": statistics.median(render),
    }


def main() -> None:
    """Print the per-request table."""
    medians = asyncio.run(_measure())
    bare = medians["bare"]
    print(
        f"cached GET /users/{{id}} in process (httpx ASGITransport); median of {ROUNDS} rounds x {REQUESTS}"
    )
    print()
    print("| endpoint | us per request | over bare (us) | bare / this |")
    print("|---|---:|---:|---:|")
    for name, value in medians.items():
        if not name.startswith("part: "):
            print(f"| {name} | {value:,.0f} | {value - bare:+,.0f} | {bare / value:.0%} |")
    print()
    print("| part of the example's request | us |")
    print("|---|---:|")
    for name, value in medians.items():
        if name.startswith("part: "):
            print(f"| {name.removeprefix('part: ')} | {value:.1f} |")


if __name__ == "__main__":
    main()
