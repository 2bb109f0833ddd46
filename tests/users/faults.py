"""What the fault tests start and stop themselves: a database of their own and a TCP proxy to cut it off.

Nothing here touches the machine's PostgreSQL beyond a database created for one test and dropped after
it; "PostgreSQL down" is a proxy the test stops, never the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine


async def create_database(server_url: str) -> str:
    """Create a database with a random name on `server_url`'s server; return its URL."""
    name = f"cqrskit_fault_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, url: str) -> None:
    """Drop the database `url` names (one `create_database` made), closing its connections."""
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@asynccontextmanager
async def own_database(server_url: str) -> AsyncIterator[str]:
    """Create a database with a random name on `server_url`'s server, yield its URL, drop it after."""
    url = await create_database(server_url)
    try:
        yield url
    finally:
        await drop_database(server_url, url)


async def terminate_backends(server_url: str, database: str) -> int:
    """Terminate every backend connected to `database` (one the test created); return how many."""
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            found = await connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )
            killed: int = found.scalar_one()
            return killed
    finally:
        await admin.dispose()


class Proxy:
    """A TCP proxy on a free local port to `target`, in a thread of its own; `cut` drops everything.

    While cut, the port refuses connections (nothing listens) and every open connection is closed:
    to the service, the database is down. `restore` listens again on the same port.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> Proxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def restore(self) -> None:
        """Listen on the proxy's port again."""
        self._server = self._run(self._listen())

    def cut(self) -> None:
        """Stop listening and close every connection through the proxy."""
        self._run(self._close())

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._pipe_client, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        writers = list(self._writers)
        self._writers.clear()
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _pipe_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            _copy(reader, upstream_writer), _copy(upstream_reader, writer), return_exceptions=True
        )


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@contextlib.contextmanager
def proxied(url: str) -> Iterator[tuple[str, Proxy]]:
    """Yield `url` rewritten to go through a new `Proxy`, and the proxy."""
    parsed = make_url(url)
    with Proxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
        yield parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
