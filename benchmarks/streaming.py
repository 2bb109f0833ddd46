"""A streaming query against a handler that returns a list: rows per second and peak memory, PostgreSQL.

Run: ``PYTHONPATH=src:. python -m benchmarks.streaming`` (PostgreSQL at CQRSKIT_POSTGRES_URL, default
postgresql+asyncpg://postgres@127.0.0.1:5432/test; skipped when it is not reachable).

Both handlers read the same 100,000 rows of a table in a schema of the benchmark's own (dropped at the
end) and turn each into an attrs DTO; the stream reads through a server-side cursor, 1,000 rows per
fetch, and the consumer counts items as they arrive. Rows per second is the median of a few timed runs
without tracing of memory; peak memory is measured in a separate run under `tracemalloc` (Python
allocations from the start of the query to its last item).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
from sqlalchemy import Integer, String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from benchmarks import BenchmarkSkippedError
from cqrskit import Context, Query, QueryBus, StreamQuery
from cqrskit.sqlalchemy import Database

POSTGRES_URL = os.environ.get("CQRSKIT_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
ROWS = 100_000
RUNS = 3


class _Base(DeclarativeBase):
    pass


class Row(_Base):
    __tablename__ = "bench_rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200))


@attrs.frozen
class RowDto:
    id: int
    name: str
    email: str


@attrs.frozen
class StreamRows(StreamQuery[RowDto]):
    pass


@attrs.frozen
class ListRows(Query[list[RowDto]]):
    pass


class StreamRowsHandler:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def handle(self, query: StreamRows, context: Context) -> AsyncIterator[RowDto]:
        async with self.database.read_session() as session:
            rows = await session.stream_scalars(
                select(Row).order_by(Row.id).execution_options(yield_per=1000)
            )
            async for row in rows:
                yield RowDto(row.id, row.name, row.email)


class ListRowsHandler:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def handle(self, query: ListRows, context: Context) -> list[RowDto]:
        async with self.database.read_session() as session:
            rows = await session.scalars(select(Row).order_by(Row.id))
            return [RowDto(row.id, row.name, row.email) for row in rows]


async def _streamed(bus: QueryBus) -> int:
    count = 0
    result = await bus.stream(StreamRows())
    async with result.unwrap() as rows:
        async for _ in rows:
            count += 1
    return count


async def _listed(bus: QueryBus) -> int:
    count = 0
    for _ in (await bus.execute(ListRows())).unwrap():
        count += 1
    return count


async def _measure(read: Callable[[QueryBus], Awaitable[int]], bus: QueryBus) -> tuple[float, float]:
    rates = []
    for _ in range(RUNS):
        started = time.perf_counter()
        count = await read(bus)
        rates.append(count / (time.perf_counter() - started))
        if count != ROWS:
            raise RuntimeError(f"read {count} rows, expected {ROWS}")
    tracemalloc.start()
    try:
        await read(bus)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return statistics.median(rates), peak / 2**20


async def _run() -> None:
    schema = f"bench_{secrets.token_hex(4)}"
    try:
        admin = Database(POSTGRES_URL)
        async with admin.engine.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OSError as exc:
        raise BenchmarkSkippedError(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}") from exc
    database = Database(
        POSTGRES_URL, engine_options={"connect_args": {"server_settings": {"search_path": schema}}}
    )
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_Base.metadata.create_all)
            await connection.execute(
                text(
                    "INSERT INTO bench_rows (id, name, email) SELECT n, 'user ' || n, "
                    "'user' || n || '@example.com' FROM generate_series(1, :rows) AS n"
                ),
                {"rows": ROWS},
            )
        bus = QueryBus({StreamRows: StreamRowsHandler(database), ListRows: ListRowsHandler(database)})
        streamed = await _measure(_streamed, bus)
        listed = await _measure(_listed, bus)
    finally:
        await database.dispose()
        async with admin.engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
    print(f"{ROWS:,} rows on PostgreSQL; rows/s median of {RUNS} runs; peak under tracemalloc\n")
    print("| handler | rows per second | peak Python memory (MiB) |")
    print("|---|---:|---:|")
    print(f"| streamed (StreamQuery, server-side cursor) | {streamed[0]:,.0f} | {streamed[1]:.1f} |")
    print(f"| returns a list (Query[list[...]]) | {listed[0]:,.0f} | {listed[1]:.1f} |")


def main() -> None:
    asyncio.run(_run())


if __name__ == "__main__":
    main()
