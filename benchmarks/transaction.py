"""What the Transaction behaviour costs: one INSERT per command, through the bus against hand-written code.

Run it with ``PYTHONPATH=src:. python -m benchmarks.transaction`` (or ``nox -s bench``). For each
database (a SQLite file in a temporary directory; PostgreSQL at ``CQRSKIT_POSTGRES_URL`` when it
answers) it times, in alternating runs:

- hand-written: ``async with sessions() as session, session.begin(): await session.execute(insert)``
  on the same engine (so SQLite gets the same BEGIN IMMEDIATE and WAL settings);
- cqrskit: ``await bus.execute(InsertRow(n))`` on a CommandBus with ``Transaction(database)``, whose
  handler runs the same insert through ``database.session``.

Each run executes COMMANDS commands one after another; the table gives the median time per command
over RUNS runs, and the ratio cqrskit / hand-written, in wall-clock time and in this process's CPU time
(``time.process_time``, aiosqlite's thread included). On a machine other work shares, the CPU columns
move less than the wall-clock ones.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from cqrskit import Command, CommandBus, Context
from cqrskit.sqlalchemy import Database, Transaction

RUNS = 9
COMMANDS = 300
POSTGRES_URL = os.environ.get("CQRSKIT_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")

metadata = MetaData()
rows = Table(
    "bench_rows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("label", String(40), nullable=False),
)


@attrs.frozen
class InsertRow(Command[None]):
    number: int


class InsertRowHandler:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def handle(self, command: InsertRow, context: Context) -> None:
        await self._database.session.execute(insert(rows).values(label=f"row {command.number}"))


async def time_loop(run_one: Callable[[int], Awaitable[Any]], count: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds per command over `count` commands run one after another."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for number in range(count):
        await run_one(number)
    return (time.perf_counter() - started) / count, (time.process_time() - cpu_started) / count


Timings = tuple[float, float, float, float]
"""Median seconds per command: hand-written wall, cqrskit wall, hand-written CPU, cqrskit CPU."""


async def compare(database: Database) -> Timings:
    """Median seconds per command, hand-written and through cqrskit, wall-clock and CPU."""
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    sessions = async_sessionmaker(database.engine, expire_on_commit=False)

    async def hand_written(number: int) -> None:
        async with sessions() as session, session.begin():
            await session.execute(insert(rows).values(label=f"row {number}"))

    bus = CommandBus({InsertRow: InsertRowHandler(database)}, [Transaction(database)])

    async def through_bus(number: int) -> None:
        result = await bus.execute(InsertRow(number))
        if not result.is_success:
            raise RuntimeError(result)

    await time_loop(hand_written, COMMANDS // 3)
    await time_loop(through_bus, COMMANDS // 3)
    plain: list[tuple[float, float]] = []
    framed: list[tuple[float, float]] = []
    gc.collect()
    for _ in range(RUNS):  # alternate, so drift in the machine's load hits both alike
        plain.append(await time_loop(hand_written, COMMANDS))
        framed.append(await time_loop(through_bus, COMMANDS))
    return (
        statistics.median(wall for wall, _ in plain),
        statistics.median(wall for wall, _ in framed),
        statistics.median(cpu for _, cpu in plain),
        statistics.median(cpu for _, cpu in framed),
    )


async def sqlite_case() -> Timings:
    with tempfile.TemporaryDirectory(prefix="cqrskit-bench-") as directory:
        database = Database(f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}")
        try:
            return await compare(database)
        finally:
            await database.dispose()


async def postgres_case() -> Timings | None:
    schema = f"cqrskit_bench_{secrets.token_hex(4)}"
    admin = Database(POSTGRES_URL, engine_options={"isolation_level": "AUTOCOMMIT"})
    try:
        async with admin.engine.connect() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OSError as exc:
        print(f"PostgreSQL skipped: {POSTGRES_URL} is unreachable ({exc})", file=sys.stderr)
        await admin.dispose()
        return None
    database = Database(
        POSTGRES_URL, engine_options={"connect_args": {"server_settings": {"search_path": schema}}}
    )
    try:
        return await compare(database)
    finally:
        await database.dispose()
        async with admin.engine.connect() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def run() -> list[tuple[str, Timings]]:
    table = [("SQLite (aiosqlite, file, WAL)", await sqlite_case())]
    postgres = await postgres_case()
    if postgres is not None:
        table.append(("PostgreSQL (asyncpg)", postgres))
    return table


def main() -> None:
    table = asyncio.run(run())
    print(f"One INSERT per command, {COMMANDS} commands per run, median of {RUNS} runs")
    print()
    print(
        "| database | hand-written µs/command | cqrskit bus + Transaction µs/command | ratio "
        "| hand-written CPU µs | cqrskit CPU µs | CPU ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (plain, framed, plain_cpu, framed_cpu) in table:
        print(
            f"| {name} | {plain * 1e6:,.0f} | {framed * 1e6:,.0f} | {framed / plain:.2f} "
            f"| {plain_cpu * 1e6:,.0f} | {framed_cpu * 1e6:,.0f} | {framed_cpu / plain_cpu:.2f} |"
        )


if __name__ == "__main__":
    main()
