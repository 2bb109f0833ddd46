"""``python -m cqrskit relay|consume|worker|dead-letters`` as subprocesses, on PostgreSQL and RabbitMQ."""

from __future__ import annotations

import json
from collections import Counter

import pytest

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
