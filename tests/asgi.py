"""One way the tests drive an ASGI app over HTTP: in process, with its lifespan running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI


@asynccontextmanager
async def asgi_client(
    app: FastAPI, *, base_url: str = "http://test", raise_app_exceptions: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """Yield an httpx client that sends its requests to `app`, whose lifespan runs around the block.

    An exception the app lets escape becomes a 500 response, as a server would send, unless
    `raise_app_exceptions` asks for it to be raised in the test instead.
    """
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=base_url) as client,
    ):
        yield client
