"""Events per second from commit to consumer effect through PostgreSQL, the relay and RabbitMQ.

Run: ``PYTHONPATH=src:. python -m benchmarks.outbox`` (PostgreSQL and RabbitMQ at
``CQRSKIT_POSTGRES_URL`` / ``CQRSKIT_RABBITMQ_URL``, defaults 127.0.0.1). Each run uses a schema,
an exchange and a queue of its own, removed at the end.

The layout is the scale-out one: this process commits the events; 1 or 2 relay processes and one
consumer process (each its own ``python -m benchmarks.outbox relay|consumer``) do the rest. Four
writers commit ``EVENTS`` events through `OutboxPublisher`, ``PER_TRANSACTION`` per transaction, as
fast as they can; each `OutboxRelay` moves rows to RabbitMQ; the `Consumer` (8 messages at a time)
writes its inbox row and one effect row per event, stamped with the time, in one transaction.

Throughput is events divided by the time from the first commit to the last effect. Latency is, per
event, from its transaction's COMMIT to its effect (``publish`` is the part up to the relay marking
it sent). While the writers outpace the pipeline, latency includes the backlog. Each row is the
median of ``REPEATS`` runs; a run longer than ``RUN_LIMIT`` seconds is abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import sqlalchemy as sa
import structlog

from benchmarks import BenchmarkSkippedError
from cqrskit import Context
from cqrskit.events import (
    Consumer,
    Event,
    EventBus,
    NatsTransport,
    OutboxPublisher,
    OutboxRelay,
    RabbitMQTransport,
    Transport,
    create_event_tables,
)
from cqrskit.events._tables import event_tables
from cqrskit.sqlalchemy import Database

POSTGRES_URL = os.environ.get("CQRSKIT_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
RABBITMQ_URL = os.environ.get("CQRSKIT_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("CQRSKIT_NATS_URL", "nats://127.0.0.1:4222")
TRANSPORTS = os.environ.get("OUTBOX_BENCH_TRANSPORTS", "rabbitmq,nats").split(",")
EVENTS = 2000
PER_TRANSACTION = 10
WRITERS = 4
REPEATS = int(os.environ.get("OUTBOX_BENCH_REPEATS", "3"))
RELAYS = [int(n) for n in os.environ.get("OUTBOX_BENCH_RELAYS", "1,2").split(",")]
LIGHT_LOAD = os.environ.get("OUTBOX_BENCH_LIGHT_LOAD", "1") != "0"
RUN_LIMIT = float(os.environ.get("OUTBOX_BENCH_RUN_LIMIT", "60"))
KEYS = 64
PACED_EVENTS = 200
PACED_RATE = 50.0  # events per second, one per transaction, for the light-load latency
ROOT = Path(__file__).resolve().parents[1]


@attrs.frozen
class Tick(Event):
    n: int
    key: str | None

    def ordering_key(self) -> str | None:
        return self.key


def effects_table(name: str) -> sa.Table:
    return sa.Table(
        "effects",
        sa.MetaData(schema=name),
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )


class Effect:
    def __init__(self, database: Database, table: sa.Table) -> None:
        self.database, self.table = database, table

    async def handle(self, event: Tick, context: Context) -> None:
        await self.database.session.execute(sa.insert(self.table).values(n=event.n, at=time.time()))


def make_transport(kind: str, name: str) -> RabbitMQTransport | NatsTransport:
    if kind == "nats":
        return NatsTransport(NATS_URL, stream=name)
    return RabbitMQTransport(RABBITMQ_URL, exchange=name)


async def delete_all(transport: Transport, queue: str) -> None:
    if isinstance(transport, NatsTransport):
        await transport.delete(queue, streams=True)
    elif isinstance(transport, RabbitMQTransport):
        await transport.delete(queue, exchanges=True)


async def until_terminated() -> None:
    """Wait for SIGTERM; print the CPU seconds this process spent since it said "ready"."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    began = time.process_time()  # this process's own CPU time, user and system
    await stop.wait()
    print(f"cpu {time.process_time() - began:.6f}", flush=True)


async def relay_role(name: str, kind: str) -> None:
    database = Database(POSTGRES_URL)
    transport = make_transport(kind, name)
    relay = OutboxRelay(database, transport, schema=name)  # woken by NOTIFY; polls every 0.1 s
    task = asyncio.create_task(relay.run())
    print("ready", flush=True)
    await until_terminated()
    relay.stop()
    await task
    await transport.close()
    await database.dispose()


async def consumer_role(name: str, kind: str) -> None:
    database = Database(POSTGRES_URL, engine_options={"pool_size": 10})
    transport = make_transport(kind, name)
    consumer = Consumer(
        transport,
        EventBus({Tick: {"effect": Effect(database, effects_table(name))}}),
        database,
        types={"Tick": Tick},
        queue=f"{name}.q",
        schema=name,
        concurrency=8,
        prefetch=64,
    )
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(consumer.started(), 30)
    print("ready", flush=True)
    terminated = asyncio.create_task(until_terminated())
    await asyncio.wait({task, terminated}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # the consumer failed: end the process, so that the run fails now
        terminated.cancel()
        task.result()
    await consumer.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await transport.close()
    await database.dispose()


async def start(role: str, name: str, kind: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.outbox", role, name, kind, env=env, stdout=asyncio.subprocess.PIPE
    )
    if process.stdout is None:
        raise RuntimeError("no pipe to the child process")
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if line.strip() != b"ready":
        raise RuntimeError(f"the {role} process did not start")
    return process


@attrs.frozen
class Run:
    rate: float
    p50: float
    p99: float
    to_marked: float
    relay_cpu: float = 0.0  # CPU seconds per 1,000 events, all relay processes together
    consumer_cpu: float = 0.0  # CPU seconds per 1,000 events in the consumer process


async def cpu_of(process: asyncio.subprocess.Process) -> float:
    """Read the "cpu <seconds>" line a role prints when it is terminated."""
    if process.stdout is None:
        return float("nan")
    async for line in process.stdout:
        if line.startswith(b"cpu "):
            return float(line.split()[1])
        sys.stderr.write(line.decode(errors="replace"))  # what the process logged (errors only)
    return float("nan")


async def one_run(kind: str, relay_count: int, keyed: bool, paced: bool = False) -> Run:
    name = "cqrskit_bench_" + secrets.token_hex(4)
    database = Database(POSTGRES_URL)
    effects = effects_table(name)
    transport = make_transport(kind, name)
    processes: list[asyncio.subprocess.Process] = []
    committed: dict[int, float] = {}
    cpu: list[float] = []
    try:
        await create_event_tables(database, name)
        async with database.engine.begin() as connection:
            await connection.run_sync(effects.metadata.create_all)
        processes.append(await start("consumer", name, kind))
        processes += [await start("relay", name, kind) for _ in range(relay_count)]
        publisher = OutboxPublisher(database, schema=name)

        async def writer(start: int) -> None:
            for first in range(start, EVENTS, PER_TRANSACTION * WRITERS):
                batch = range(first, min(first + PER_TRANSACTION, EVENTS))
                async with database.transaction():
                    for n in batch:
                        await publisher.publish(Tick(n, f"k{n % KEYS}" if keyed else None))
                now = time.time()
                for n in batch:
                    committed[n] = now

        async def paced_writer() -> None:
            for n in range(PACED_EVENTS):
                async with database.transaction():
                    await publisher.publish(Tick(n, f"k{n % KEYS}" if keyed else None))
                committed[n] = time.time()
                await asyncio.sleep(1 / PACED_RATE)

        began = time.monotonic()
        if paced:
            await paced_writer()
        else:
            await asyncio.gather(*(writer(w * PER_TRANSACTION) for w in range(WRITERS)))
        rate, p50, p99, sent = await measure(database, name, committed, began, processes)
        for process in processes:
            process.terminate()
        cpu = [await asyncio.wait_for(cpu_of(process), 30) for process in processes]
        per_1000 = 1000 / len(committed)
        return Run(rate, p50, p99, sent, sum(cpu[1:]) * per_1000, cpu[0] * per_1000)
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        with contextlib.suppress(Exception):
            await delete_all(transport, f"{name}.q")
        await transport.close()
        async with database.engine.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        await database.dispose()


async def measure(
    database: Database,
    name: str,
    committed: dict[int, float],
    began: float,
    processes: list[asyncio.subprocess.Process],
) -> tuple[float, float, float, float]:
    """Wait for every effect, then return events/s, p50 and p99 commit-to-effect, p50 commit-to-sent."""
    effects = effects_table(name)
    events = len(committed)
    count = sa.select(sa.func.count()).select_from(effects)
    while True:
        async with database.engine.connect() as connection:
            if await connection.scalar(count) == events:
                break
        if time.monotonic() - began > RUN_LIMIT:
            raise TimeoutError(f"not every event was handled within {RUN_LIMIT}s")
        if any(process.returncode is not None for process in processes):
            raise RuntimeError("a relay or consumer process ended during the run")
        await asyncio.sleep(0.02)
    outbox = event_tables(name).outbox
    async with database.engine.connect() as connection:
        handled = dict((await connection.execute(sa.select(effects.c.n, effects.c.at))).all())
        published = sorted(
            row.published_at - row.created_at
            for row in await connection.execute(sa.select(outbox.c.created_at, outbox.c.published_at))
        )
    elapsed = max(handled.values()) - min(committed.values())
    latencies = sorted((handled[n] - committed[n]) * 1000 for n in range(events))
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return events / elapsed, statistics.median(latencies), p99, statistics.median(published) * 1000


def median_run(runs: list[Run]) -> Run:
    fields = attrs.fields(Run)
    return Run(*(statistics.median(getattr(r, f.name) for r in runs) for f in fields))


async def run() -> None:
    for kind in TRANSPORTS:
        print(f"## {kind}")
        print()
        print(
            f"Throughput: {EVENTS} events, {WRITERS} writers x {PER_TRANSACTION} events per transaction, "
            f"1 consumer process (8 at a time), median of {REPEATS} runs; CPU seconds per 1,000 events "
            "in the relay processes (together) and in the consumer process"
        )
        print()
        print(
            "| events | relay processes | events/s | p50 commit→effect (ms) | p99 (ms) | p50 to marked (ms) "
            "| relay CPU s/1k | consumer CPU s/1k |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for keyed in (False, True):
            for relays in RELAYS:
                r = median_run([await one_run(kind, relays, keyed) for _ in range(REPEATS)])
                label = f"keyed ({KEYS} keys)" if keyed else "no key"
                print(
                    f"| {label} | {relays} | {r.rate:,.0f} | {r.p50:.0f} | {r.p99:.0f} | {r.to_marked:.0f} "
                    f"| {r.relay_cpu:.2f} | {r.consumer_cpu:.2f} |"
                )
        print()
        if not LIGHT_LOAD:
            continue
        print(
            f"Latency at a light load: {PACED_EVENTS} keyed events, one per transaction, "
            f"{PACED_RATE:.0f} per second, median of {REPEATS} runs"
        )
        print()
        print("| relay processes | p50 commit→effect (ms) | p99 (ms) | p50 to marked (ms) |")
        print("|---:|---:|---:|---:|")
        for relays in RELAYS:
            r = median_run([await one_run(kind, relays, keyed=True, paced=True) for _ in range(REPEATS)])
            print(f"| {relays} | {r.p50:.1f} | {r.p99:.1f} | {r.to_marked:.1f} |")
        print()


def _reachable(url: str, port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or port), timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    """Run the benchmark and print its table."""
    brokers = {"rabbitmq": (RABBITMQ_URL, 5672), "nats": (NATS_URL, 4222)}
    if not _reachable(POSTGRES_URL, 5432) or not all(_reachable(*brokers[k]) for k in TRANSPORTS):
        raise BenchmarkSkippedError(
            f"needs PostgreSQL ({POSTGRES_URL}) and {', '.join(brokers[k][0] for k in TRANSPORTS)}"
        )
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    if len(sys.argv) == 4 and sys.argv[1] in {"relay", "consumer"}:
        role = relay_role if sys.argv[1] == "relay" else consumer_role
        profile_to = os.environ.get("OUTBOX_BENCH_PROFILE")  # a directory: one .pstats per process
        if profile_to:
            import cProfile

            with cProfile.Profile(time.process_time) as profile:  # CPU time: holds on a busy machine
                asyncio.run(role(sys.argv[2], sys.argv[3]))
            profile.dump_stats(Path(profile_to) / f"{sys.argv[1]}-{os.getpid()}.pstats")
        else:
            asyncio.run(role(sys.argv[2], sys.argv[3]))
        return
    asyncio.run(run())


if __name__ == "__main__":
    main()
