"""``python -m cqrskit relay|consume|worker|dead-letters`` as subprocesses, on PostgreSQL and RabbitMQ."""

from __future__ import annotations

import json
import re
import socket
import time
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from cqrskit.events._tables import event_tables
from tests.integration.operate.app import Happened
from tests.integration.operate.conftest import CONTEXT, Stage, eventually

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


async def test_sigterm_mid_batch_loses_and_duplicates_nothing(stage: Stage) -> None:
    """Consumer and relay stopped with SIGTERM while messages flow, then restarted: each applied once."""
    total = 300
    # Several keys, so the relay has several partitions and the consumer several messages in hand.
    await stage.record(*(Happened(f"e{i}", key=f"k{i % 7}") for i in range(total)), context=CONTEXT)
    consumer = stage.start("consume", "--concurrency", "4", OP_DELAY="0.01")
    await consumer.ready()
    relay = stage.start("relay", "--health-port", "0")
    await relay.ready()

    async def some_applied() -> bool:
        return len(await stage.effects()) >= 30

    await eventually(some_applied, "the first effects")
    assert await consumer.terminate() == 0, consumer.output()  # mid-batch: messages in hand
    assert await relay.terminate() == 0, relay.output()
    stopped_at = len(await stage.effects())
    assert stopped_at < total, "the test meant to stop the consumer mid-way"
    for process in (consumer, relay):
        output = process.output()
        assert '"event": "process_ready"' in output, output
        assert '"event": "process_stopped"' in output, output
        assert '"level": "error"' not in output, output

    consumer = stage.start("consume", OP_DELAY="0")
    await consumer.ready()
    relay = stage.start("relay")
    await relay.ready()

    async def all_applied() -> bool:
        return len({row.event_id for row in await stage.effects()}) == total

    await eventually(all_applied, f"all {total} events applied")
    assert await consumer.terminate() == 0
    assert await relay.terminate() == 0
    counts = Counter(row.event_id for row in await stage.effects())
    assert set(counts) == {f"e{i}" for i in range(total)}  # nothing lost
    assert max(counts.values()) == 1  # nothing applied twice
    row = (await stage.effects())[0]
    assert (row.correlation_id, row.principal) == ("corr-42", "ops-user")


async def test_a_missing_provider_exits_with_status_2(stage: Stage) -> None:
    done = stage.run("consume", "tests.integration.operate.app:Container", "--consumer", "nothing")
    assert done.returncode == 2
    assert "no provider named 'nothing'" in done.stderr


async def test_missing_tables_exit_with_status_2_and_name_them(stage: Stage) -> None:
    """Started on a schema without its inbox: one line naming the table and the fix, status 2, no loop."""
    async with stage.database.engine.begin() as connection:
        await connection.execute(sa.text(f'DROP TABLE "{stage.name}".cqrskit_inbox'))
    done = stage.run("consume", "tests.integration.operate.app:Container")
    assert done.returncode == 2, done.stderr
    assert "the database has no cqrskit_inbox: create cqrskit's tables before starting" in done.stderr
    assert '"exception"' not in done.stderr  # a deployment error, not a traceback per pass
    assert '"event": "process_ready"' not in done.stderr


async def test_a_fatal_error_exits_non_zero(stage: Stage) -> None:
    """A consumer that cannot reach its broker ends the process with status 1."""
    done = stage.run(
        "consume",
        "tests.integration.operate.app:Container",
        OP_RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/",
    )
    assert done.returncode == 1, done.stderr
    assert '"event": "process_stopped"' in done.stderr


async def test_a_poison_message_is_listed_fixed_replayed_and_applied_once(stage: Stage) -> None:
    """Dead-lettered, listed, shown, fixed, replayed by id: applied once, with its original headers."""
    await stage.poison("bad", "worse")
    worker = stage.start("worker")
    await worker.ready()
    await stage.record(
        Happened("bad", key="order:1"), Happened("worse", key="order:2"), Happened("good"), context=CONTEXT
    )

    def listed() -> list[dict[str, object]]:
        done = stage.run("dead-letters", "list", "tests.integration.operate.app:Container")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    async def both_dead() -> bool:
        return len(listed()) == 2

    await eventually(both_dead, "the poison messages in the dead letters")
    dead = {entry["key"]: entry for entry in listed()}
    assert dead["order:1"]["name"] == "Happened"
    assert dead["order:1"]["reason"] == "rejected"
    assert dead["order:1"]["correlation_id"] == "corr-42"
    bad_id = str(dead["order:1"]["message_id"])
    shown = stage.run("dead-letters", "show", "tests.integration.operate.app:Container", "--id", bad_id)
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["payload"] == {"id": "bad", "key": "order:1"}
    assert detail["headers"]["principal"]["id"] == "ops-user"
    assert [row.event_id for row in await stage.effects()] == ["good"]

    refused = stage.run("dead-letters", "replay", "tests.integration.operate.app:Container")
    assert refused.returncode == 2  # neither --id, --name nor --all

    await stage.poison("bad", cured=True)  # the subscriber is fixed
    replayed = stage.run("dead-letters", "replay", "tests.integration.operate.app:Container", "--id", bad_id)
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["replayed"] == 1

    async def applied() -> bool:
        return "bad" in {row.event_id for row in await stage.effects()}

    await eventually(applied, "the replayed message applied")
    rows = [row for row in await stage.effects() if row.event_id == "bad"]
    assert len(rows) == 1
    assert (rows[0].message_key, rows[0].correlation_id, rows[0].causation_id, rows[0].principal) == (
        "order:1",
        "corr-42",
        "op-7",
        "ops-user",
    )
    assert [entry["key"] for entry in listed()] == ["order:2"]

    purged = stage.run(
        "dead-letters", "purge", "tests.integration.operate.app:Container", "--name", "Happened"
    )
    assert json.loads(purged.stdout)["purged"] == 1
    assert listed() == []
    assert await worker.terminate() == 0, worker.output()
    assert len([row for row in await stage.effects() if row.event_id == "bad"]) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sample(text: str, metric: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith((metric + "{", metric + " ")):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_probes_and_metrics_move_as_events_flow(stage: Stage) -> None:
    port = free_port()
    worker = stage.start("worker", "--metrics", "--health-port", str(port), "--max-lag", "3600")
    await worker.ready()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        before = (await client.get("/metrics")).text
        assert sample(before, "cqrskit_relay_published_total", name="Happened") == 0
        await stage.record(*(Happened(f"m{i}", key=f"k{i}") for i in range(5)), context=CONTEXT)

        async def counted() -> bool:
            text = (await client.get("/metrics")).text
            return (
                sample(text, "cqrskit_consumer_messages_total", queue=stage.queue, outcome="processed") == 5
            )

        await eventually(counted, "five messages counted as processed")
        text = (await client.get("/metrics")).text
        assert sample(text, "cqrskit_relay_published_total", name="Happened") == 5
        assert sample(text, "cqrskit_consume_latency_seconds_count", queue=stage.queue) == 5
        assert "cqrskit_outbox_oldest_age_seconds" in text
        assert "cqrskit_outbox_pending" in text
    assert await worker.terminate() == 0


async def test_cleanup_removes_only_what_retention_allows(stage: Stage) -> None:
    tables = event_tables(stage.name)
    now = time.time()
    day = 24 * 3600.0
    async with stage.database.transaction() as session:
        rows = [("old-sent", now - 10 * day, now - 10 * day), ("new-sent", now - 3600, now - 3600)]
        for message_id, created, published in rows:
            await session.execute(
                sa.insert(tables.outbox).values(
                    message_id=message_id,
                    name="Gone",
                    ordering_key=None,
                    partition=-1,
                    payload=b"{}",
                    headers="{}",
                    created_at=created,
                    published_at=published,
                )
            )
        await session.execute(
            sa.insert(tables.inbox),
            [
                {"message_id": "old", "subscriber": "record", "handled_at": now - 10 * day},
                {"message_id": "new", "subscriber": "record", "handled_at": now - 60},
            ],
        )
        await session.execute(
            sa.insert(tables.idempotency),
            [
                {
                    "principal": "p",
                    "key": "expired",
                    "message_type": "X",
                    "result": None,
                    "expires_at": now - 1,
                },
                {
                    "principal": "p",
                    "key": "live",
                    "message_type": "X",
                    "result": None,
                    "expires_at": now + day,
                },
            ],
        )
    worker = stage.start(
        "worker",
        "--idempotency",
        "idempotency",
        "--outbox-retention",
        str(day),
        "--inbox-retention",
        str(day),
        "--cleanup-batch",
        "1",
    )
    await worker.ready()

    async def cleaned() -> bool:
        return worker.output().count('"event": "cleanup_done"') >= 3

    await eventually(cleaned, "the first cleanup round")
    assert await worker.terminate() == 0
    async with stage.database.engine.connect() as connection:
        outbox = set((await connection.execute(sa.select(tables.outbox.c.message_id))).scalars())
        inbox = set((await connection.execute(sa.select(tables.inbox.c.message_id))).scalars())
        keys = set((await connection.execute(sa.select(tables.idempotency.c.key))).scalars())
    assert outbox == {"new-sent"}
    assert inbox == {"new"}
    assert keys == {"live"}
    output = worker.output()
    for table in ("outbox", "inbox", "idempotency_keys"):
        assert (
            f'"table": "{table}", "removed": 1' in output or f'"removed": 1, "table": "{table}"' in output
        ), output
